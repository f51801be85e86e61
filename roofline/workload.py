"""What is asked of the model (`Workload`) and how it is deployed (`Deployment`).

Both are frozen pydantic records; a bad value is a one-line `SpecError`-style
validation error naming the field.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .dtypes import QuantScheme, get_dtype
from .units import GIB

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class Workload(BaseModel):
    """A static batch: `batch_size` sequences, each a prompt then `output_tokens` generated tokens.

    The first output token comes out of prefill (TTFT); the remaining
    `output_tokens - 1` come from decode steps (TPOT).
    """

    model_config = _FROZEN
    batch_size: int = Field(1, ge=1, description="concurrent sequences")
    prompt_tokens: int = Field(ge=1, description="input tokens per sequence")
    output_tokens: int = Field(ge=1, description="generated tokens per sequence")

    @property
    def context_tokens(self) -> int:
        """Tokens each sequence holds in the KV cache at the end: prompt + output."""
        return self.prompt_tokens + self.output_tokens


class Deployment(BaseModel):
    """How the model runs: parallelism, number formats, attention kernel, memory reserve.

    dtypes default to the model's native formats (`None` = native: the released
    weight format, e.g. MXFP4 for gpt-oss, and native_dtype for the rest). Weight and
    KV dtypes are storage formats; `activation_dtype` is the compute format and
    picks the tensor-core peak: W4A16 (`weight_dtype="int4"`) computes at the
    BF16 peak, W8A8 / FP8 at the 8-bit peak.
    """

    model_config = _FROZEN
    tp: int = Field(1, ge=1, description="tensor-parallel degree (GPUs per replica)")
    weight_dtype: str | None = Field(None, description="storage format of linear-layer weights and the LM head")
    activation_dtype: str | None = Field(None, description="compute format of GEMMs and attention")
    kv_dtype: str | None = Field(None, description="storage format of the KV cache")
    weight_group_size: int | None = Field(None, gt=0, description="elements per quantization scale (group-wise quantization)")
    weight_scale_dtype: str | None = Field(None, description="format of the quantization scales (default: the weight dtype's convention)")
    weight_zero_point: bool = Field(False, description="asymmetric quantization: one zero point per scale, stored at the weight's bit width")
    attention_impl: Literal["flash", "naive"] = Field("flash", description="flash: fused, no score matrix in HBM; naive: scores and probabilities written and read")
    runtime_reserve_bytes: float = Field(
        2 * GIB, ge=0,
        description="per-GPU memory the runtime keeps (CUDA context, cuBLAS/NCCL workspaces, CUDA graphs); "
        "vLLM and TensorRT-LLM logs on 80 GB cards report about 1-3 GiB of such non-tensor memory",
    )

    @model_validator(mode="after")
    def _check(self) -> "Deployment":
        for field in ("weight_dtype", "activation_dtype", "kv_dtype", "weight_scale_dtype"):
            value = getattr(self, field)
            if value is not None:
                get_dtype(value, field)
        return self

    def resolved(self, model) -> "ResolvedDeployment":
        """Fill the model's native formats in and check the formats against each other."""
        return ResolvedDeployment.of(self, model.native_dtype, model.native_weight_dtype)


class ResolvedDeployment:
    """A Deployment with dtypes resolved against a model: what `ops.py` consumes."""

    __slots__ = ("dep", "weights", "act", "kv", "native", "unquantized", "compute_key")

    @classmethod
    def of(cls, dep: Deployment, native_dtype: str, native_weight_dtype: str | None = None) -> "ResolvedDeployment":
        from .errors import SpecError
        from .specs import kv_scheme

        self = cls()
        self.dep = dep
        self.native = get_dtype(native_dtype, "native_dtype")
        wd = get_dtype(dep.weight_dtype or native_weight_dtype or native_dtype, "weight_dtype")
        ad = get_dtype(dep.activation_dtype or native_dtype, "activation_dtype")
        if wd.name == "tf32":
            raise SpecError("weight_dtype", "tf32 is a compute mode, not a storage format; use fp32")
        if ad.peak_key is None:
            raise SpecError("activation_dtype", f"{ad.name} is a storage-only format; compute in bf16 or fp16")
        if ad.bits < wd.bits and ad.name != "tf32":
            raise SpecError(
                "activation_dtype",
                f"{ad.name} activations with {wd.name} weights would need the weights re-quantized every step; "
                f"use weight_dtype with at most {ad.bits} bits (e.g. weight_dtype={ad.name})",
            )
        self.weights = QuantScheme.of(wd, dep.weight_group_size, dep.weight_scale_dtype, dep.weight_zero_point, field="weight")
        # Tensors quantizers leave alone (norms, biases, routers, an untied embedding table) follow a plain
        # float cast of the weights (fp32, fp16) but stay in the native dtype under int8/int4/fp8/nf4/fp4.
        self.unquantized = self.weights if not wd.is_quantized else QuantScheme.of(self.native)
        self.act = ad
        self.kv = kv_scheme(dep.kv_dtype or native_dtype)
        self.compute_key = ad.peak_key
        return self

    @property
    def act_bytes(self) -> float:
        """Bytes per activation element moved between kernels.

        16-bit or wider compute keeps its own width. 8- and 4-bit compute (W8A8, FP8,
        FP4) quantizes activations inside the GEMM prologue and writes 16-bit outputs,
        so activations in HBM (and all-reduce messages) stay 2 bytes.
        """
        return max(self.act.bits / 8, 2.0)

    @property
    def unquantized_bytes(self) -> float:
        """Bytes per element of norms, biases and other tensors quantization leaves alone."""
        return self.unquantized.dtype.bits / 8
