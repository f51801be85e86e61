"""Hardware profiles: datasheet peaks, achievable fractions, interconnect and price, each sourced.

Peaks are **dense** (no 2:4 sparsity): datasheets headline the sparse figure
(H100 SXM "3,958 TFLOPS FP8" is 1,979 dense x 2). The 2:4 speed-up is kept
apart in `sparsity_2_4_speedup` and applied only where a GEMM actually uses it.

Realistic predictions multiply the peaks by `efficiency` fractions (what
well-tuned kernels reach in practice); the floor uses the peaks as they are.
Every figure names its source in `sources` (the key is the field name, dotted
for nested fields); a profile missing a source does not load.
"""

import math
from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from .calibration import Calibration
from .dtypes import get_dtype
from .errors import NumbersAreNumbers, SpecError

_FROZEN = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)  # every number finite

# Physical upper bounds: an order of magnitude or more above any device shipped or announced, low
# enough that a typo (an extra zero group, a value in the wrong unit) or an absurd value is refused.
MAX_BANDWIDTH_BYTES_PER_S = 100e12  # 100 TB/s (B200 HBM3e: 8 TB/s; NVLink 5: 900 GB/s per direction)
MAX_MEMORY_BYTES = 10e12  # 10 TB per device (GB200: 186 GB)
MAX_FLOPS_PER_S = 1e18  # 1 EFLOP/s dense per device (B200 FP4 dense: 9e15)
MAX_PRICE_USD_PER_GPU_HOUR = 1000.0
MAX_LATENCY_S = 1.0  # per message, per kernel: real values are microseconds
MAX_DOMAIN_GPUS = 4096  # GPUs in one scale-up domain (NVL72: 72; NVLink Switch systems up to 576)
MAX_TDP_W = 100_000.0

PEAK_KEYS = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8", "fp4", "int4")


class Interconnect(NumbersAreNumbers):
    """The scale-up link between GPUs of one node (NVLink, Infinity Fabric, or PCIe)."""

    model_config = _FROZEN
    name: str
    bytes_per_s_per_direction: float = Field(gt=0, lt=MAX_BANDWIDTH_BYTES_PER_S, description="per GPU, one direction (NVLink 4: 900 GB/s total = 450 GB/s each way)")
    latency_s: float = Field(ge=0, le=MAX_LATENCY_S, description="per-message latency of one hop of a collective")
    max_gpus: int = Field(ge=1, le=MAX_DOMAIN_GPUS, description="GPUs in one scale-up domain (8 for an HGX board, 72 for GB200 NVL72)")
    # how an all-reduce can run (`roofline.collectives`); left out, a profile keeps the ring alone
    topology: Literal["switch", "mesh", "pcie"] = Field(
        "switch", description="switch: every GPU's full link reaches a switch (NVSwitch); mesh: one direct link per GPU "
                              "pair (xGMI, an NVLink bridge); pcie: through the PCIe host fabric")
    pair_bytes_per_s_per_direction: float | None = Field(
        None, gt=0, lt=MAX_BANDWIDTH_BYTES_PER_S, description="mesh only: one GPU-pair link, one direction (MI300X xGMI: 64 GB/s)")
    custom_allreduce_latency_s: float | None = Field(
        None, ge=0, le=MAX_LATENCY_S, description="fixed time of one step of the engine's one-shot / two-shot all-reduce "
                                                  "(CUDA-graph replay); None: the engine has none here, NCCL's ring only")
    nvls_bandwidth_fraction: float | None = Field(
        None, gt=0, le=1, description="NVLink SHARP (in-switch reduction): achieved message bytes/s over the link rate; "
                                      "None: the realistic model runs no NVLS (see nvls_capable for the floor)")
    nvls_capable: bool = Field(
        False, description="the switch can reduce in-network (NVLink SHARP: third-generation NVSwitch and later). The floor "
                           "counts NVLS at the full link rate where the switch has it, whether or not the realistic model "
                           "runs it (nvls_bandwidth_fraction): NCCL takes NVLS for large messages on such a board, so a "
                           "measured all-reduce may beat the two-shot line 2(p-1)/p · S / link that bounds the rest")
    sources: dict[str, str] = Field(default_factory=dict, description="field -> source, for the all-reduce fields above")

    @model_validator(mode="after")
    def _check(self) -> "Interconnect":
        if self.topology == "mesh" and self.pair_bytes_per_s_per_direction is None:
            raise SpecError("interconnect.pair_bytes_per_s_per_direction", "a mesh needs the rate of one GPU-pair link "
                                                                           "(MI300X xGMI: 64.0e+9)")
        if self.topology != "mesh" and self.pair_bytes_per_s_per_direction is not None:
            raise SpecError("interconnect.pair_bytes_per_s_per_direction", f"applies to topology mesh only, not {self.topology}")
        if self.nvls_bandwidth_fraction is not None and self.topology != "switch":
            raise SpecError("interconnect.nvls_bandwidth_fraction", "NVLS reduces inside an NVSwitch: topology must be switch")
        if self.nvls_capable and self.topology != "switch":
            raise SpecError("interconnect.nvls_capable", "NVLS reduces inside an NVSwitch: topology must be switch")
        # a value other than the default needs its source (a dumped profile repeats the default switch: no source needed)
        defaults = {"topology": "switch"}
        set_fields = [k for k in ("topology", "pair_bytes_per_s_per_direction", "custom_allreduce_latency_s", "nvls_bandwidth_fraction",
                                  "nvls_capable")
                      if k in self.model_fields_set and getattr(self, k) not in (None, False) and getattr(self, k) != defaults.get(k)]
        missing = [k for k in set_fields if k not in self.sources]
        if missing:
            raise SpecError("interconnect.sources", f"no source for {', '.join(missing)}")
        return self


class BlockScaledMma(NumbersAreNumbers):
    """One pair of block-scaled formats the tensor cores multiply as they are stored: weights in `weight_dtype` and
    activations in `activation_dtype`, each with one `scale_bits`-bit power-of-two scale per `scale_group_size`
    elements of K, the scales applied inside the MMA (D = (A · SF_A)(B · SF_B) + C) at the `peak_key` rate.

    Such a GEMM is not weight-only: it dequantizes nothing on the vector units (`ops.dequant_vector_flops` is 0) and
    computes at `peak_flops_per_s[peak_key]`, while its weights keep their packed bytes and scales. Blackwell's
    tcgen05.mma `kind::mxf8f6f4` takes A, B in {MXFP8, MXFP6, MXFP4} (UE8M0 scales per 32 elements) at the FP8 rate:
    MXFP4 weights x MXFP8 activations (gpt-oss's W4A8 experts on B200) run at 4.5 PFLOP/s dense on B200, not at
    the BF16 rate after a dequantization pass. Hopper's wgmma has no block-scaled kind (no entry there)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    weight_dtype: str = Field(description="stored weight format (a `dtypes` name: fp4)")
    activation_dtype: str = Field(description="activation format of the MMA (a `dtypes` name: fp8_e4m3, fp8_e5m2)")
    scale_group_size: int = Field(ge=1, le=1024, description="elements of K per scale of both operands (MX: 32)")
    scale_bits: int = Field(ge=1, le=32, description="bits of one scale (UE8M0: 8)")
    peak_key: str = Field(description="the `peak_flops_per_s` key the pair computes at (mxf8f6f4: fp8)")

    @field_validator("weight_dtype", "activation_dtype")
    @classmethod
    def _format(cls, value: str, info) -> str:
        """The canonical `dtypes` name (fp8 -> fp8_e4m3) of a quantized format."""
        d = get_dtype(value, f"block_scaled_mma.{info.field_name}")
        if not d.is_quantized:
            raise SpecError(f"block_scaled_mma.{info.field_name}", f"{d.name} is not a block-scaled format; use fp4 or fp8_e4m3")
        return d.name

    @field_validator("peak_key")
    @classmethod
    def _peak_key(cls, value: str) -> str:
        if value not in PEAK_KEYS:
            raise SpecError("block_scaled_mma.peak_key", f"unknown dtype key {value!r}; choose from {', '.join(PEAK_KEYS)}")
        return value

    def takes(self, weights, act) -> bool:
        """Whether a GEMM of `weights` (a `dtypes.QuantScheme`) and `act` (a `dtypes.DType`) is this pair: the formats
        named, the weights scaled per group of `scale_group_size` with `scale_bits`-bit scales (MXFP4 as gpt-oss
        ships it; NVFP4's 16-element E4M3 scales are another kind)."""
        return (weights.dtype.name == self.weight_dtype and act.name == self.activation_dtype
                and weights.granularity == "group" and weights.group_size == self.scale_group_size
                and weights.scale_bits == self.scale_bits and weights.zero_point_bits == 0)


class Efficiency(NumbersAreNumbers):
    """Achievable fractions of peak, used for realistic (non-floor) predictions.

    Defaults are public measurements; `roofline calibrate` replaces them with the user's own.
    """

    model_config = _FROZEN
    memory_bandwidth_fraction: float = Field(gt=0, le=1, description="achieved / peak HBM bandwidth for large streaming reads")
    flops_fraction: dict[str, float] = Field(max_length=len(PEAK_KEYS), description="achieved / dense peak for large GEMMs, per compute dtype key")
    attention_flops_fraction: float = Field(gt=0, le=1, description="achieved / dense peak of fused (flash) attention kernels")
    interconnect_bandwidth_fraction: float = Field(gt=0, le=1, description="achieved / peak bus bandwidth of all-reduce")
    kernel_overhead_s: float = Field(ge=0, le=MAX_LATENCY_S, description="fixed cost per kernel (launch and tail), seconds")
    kernel_overhead_graph_s: float | None = Field(
        None, ge=0, le=MAX_LATENCY_S, description="cost per kernel replayed from a CUDA graph, seconds; charged to the decode "
                                                  "steps of a calibrated profile (engines replay decode from graphs); None = unknown")
    source_kind: Literal["default", "calibrated"] = "default"
    sources: dict[str, str] = Field(description="field -> where the figure comes from")

    @model_validator(mode="after")
    def _check(self) -> "Efficiency":
        for key, frac in self.flops_fraction.items():
            if key not in PEAK_KEYS:
                raise SpecError(f"efficiency.flops_fraction.{key}", f"unknown dtype key; choose from {', '.join(PEAK_KEYS)}")
            if not 0 < frac <= 1:
                raise SpecError(f"efficiency.flops_fraction.{key}", f"must be in (0, 1], got {frac}")
        needed = {"memory_bandwidth_fraction", "flops_fraction", "attention_flops_fraction",
                  "interconnect_bandwidth_fraction", "kernel_overhead_s"}
        if self.kernel_overhead_graph_s is not None:
            needed.add("kernel_overhead_graph_s")
        missing = sorted(needed - set(self.sources))
        if missing:
            raise SpecError("efficiency.sources", f"no source for {', '.join(missing)}")
        return self


def parse_prices(text: str, field: str = "price") -> dict[str, float]:
    """'h100-sxm=2.5,h200=3.1' (or a list of such items) -> {hardware id: USD per GPU-hour}; a bad item is
    one `SpecError` naming it. The ids are checked where the profiles are loaded."""
    items = text if isinstance(text, (list, tuple)) else [text]
    out: dict[str, float] = {}
    for item in (x.strip() for chunk in items for x in str(chunk).split(",")):
        if not item:
            continue
        device, sep, value = item.partition("=")
        try:
            usd = float(value)
        except ValueError:
            usd = math.nan
        if not sep or not device.strip() or not (usd > 0 and math.isfinite(usd)):
            raise SpecError(field, f"expected DEVICE=USD_PER_GPU_HOUR with a positive price, e.g. h100-sxm=2.5; got {item!r}")
        out[device.strip()] = usd
    return out


PRICE_BASIS = ("Modal's public list price for one GPU (modal.com/pricing: base rate per GPU-second x 3600, on-demand, "
               "no commitment), as verified 2026-05-07 (techbytes.app/posts/serverless-gpu-pricing-matrix-modal-replicate-lambda-2026/) "
               "and 2026-06-27 (beam.cloud/blog/modal-pricing-explained); devices Modal does not offer carry another "
               "provider's on-demand list price or an estimate, marked beside them")
"""The one basis every shipped price is on (`HardwareProfile.price_kind` says where a profile's is not)."""


class HardwareProfile(NumbersAreNumbers):
    """One accelerator as a datasheet and public measurements describe it. SI units throughout."""

    model_config = _FROZEN
    name: str = Field(min_length=1, max_length=200)
    id: str = Field("", description="the id or path it was loaded by (set by load_hardware); tells apart profiles of one name")
    vendor: str
    architecture: str
    memory_bytes: int = Field(gt=0, le=MAX_MEMORY_BYTES, description="device memory total as NVML / nvidia-smi reports it (cudaMemGetInfo reports ~0.5-0.8% less)")
    memory_bandwidth_bytes_per_s: float = Field(gt=0, lt=MAX_BANDWIDTH_BYTES_PER_S, description="peak HBM/GDDR bandwidth")
    peak_flops_per_s: dict[str, float] = Field(max_length=len(PEAK_KEYS), description="dense peak FLOP/s (OP/s for int) per dtype key")
    sparsity_2_4_speedup: float | None = Field(None, ge=1, le=2, description="tensor-core speed-up from 2:4 structured sparsity; None = unsupported")
    l2_bytes: int = Field(gt=0, le=MAX_MEMORY_BYTES)
    l2_read_bytes_per_s: float | None = Field(
        None, gt=0, lt=MAX_BANDWIDTH_BYTES_PER_S, description="measured rate at which the SMs together read data that hits "
        "in L2 (many thread blocks re-reading one buffer that fits in it); times the repeated KV reads of a generic GQA "
        "decode kernel (`ops.decode_kv_reads`). None: not measured, such reads cost nothing beyond their HBM bytes")
    interconnect: Interconnect
    host_link_bytes_per_s_per_direction: float = Field(gt=0, lt=MAX_BANDWIDTH_BYTES_PER_S, description="PCIe/C2C link to the host, one direction")
    tdp_w: float = Field(gt=0, le=MAX_TDP_W)
    idle_power_w: float = Field(gt=0, le=MAX_TDP_W, description="power of the board with an engine loaded and no kernel running "
                                                                "(`energy.power_w` at utilization 0)")
    price_usd_per_gpu_hour: float = Field(gt=0, lt=MAX_PRICE_USD_PER_GPU_HOUR, description="approximate on-demand cloud price")
    price_date: str = Field(pattern=r"^\d{4}-\d{2}(-\d{2})?$")
    price_kind: Literal["basis", "other", "estimate", "override"] = Field(
        "other", description="basis: the price is on PRICE_BASIS; other: another provider's list price (named in "
        "sources); estimate: no listed price, derived as sources says; override: set by the user (--price)")
    gemm_tile_tokens: int = Field(ge=1, le=4096, description="M-granularity of tensor-core GEMM tiles: token counts are rounded up to it")
    # the shape-aware GEMM model (`gemm_shapes`): None leaves the constant flops_fraction
    sm_count: int | None = Field(None, ge=1, le=4096, description="SMs (CUs) a GEMM's tiles are spread over")
    gemm_tile_m: int | None = Field(None, ge=1, le=1024, description="rows (tokens) of one large-GEMM output tile")
    gemm_tile_n: int | None = Field(None, ge=1, le=1024, description="columns of one large-GEMM output tile")
    block_scaled_mma: tuple[BlockScaledMma, ...] = Field(
        (), description="(weight, activation) block-scaled format pairs the tensor cores multiply natively, scales "
                        "inside the MMA (`BlockScaledMma`); none: a weight narrower than its activation is dequantized")
    efficiency: Efficiency
    sources: dict[str, str]
    notes: str = ""
    calibration: Calibration | None = Field(
        None, description="measured curves attached by load_hardware(..., calibration=path); None = analytical")

    @property
    def mode(self) -> Literal["analytical", "calibrated"]:
        """`calibrated` when measured curves time the operators, else `analytical` (datasheet x fractions)."""
        return "analytical" if self.calibration is None else "calibrated"

    @model_validator(mode="after")
    def _check(self) -> "HardwareProfile":
        for key, flops in self.peak_flops_per_s.items():
            if key not in PEAK_KEYS:
                raise SpecError(f"peak_flops_per_s.{key}", f"unknown dtype key; choose from {', '.join(PEAK_KEYS)}")
            if not 0 < flops <= MAX_FLOPS_PER_S:
                raise SpecError(f"peak_flops_per_s.{key}", f"must be positive and at most {MAX_FLOPS_PER_S:.0e} FLOP/s, got {flops}")
        if self.l2_bytes >= self.memory_bytes:
            raise SpecError("l2_bytes", f"{self.l2_bytes:,} is not below memory_bytes={self.memory_bytes:,}: an L2 cache "
                                        "is a small fraction of device memory (H100: 50 MB of 80 GB)")
        for key in ("fp32", "bf16", "fp16"):
            if key not in self.peak_flops_per_s:
                raise SpecError("peak_flops_per_s", f"needs at least fp32, bf16 and fp16; {key} is missing")
        missing_eff = sorted(set(self.peak_flops_per_s) - set(self.efficiency.flops_fraction))
        if missing_eff:
            raise SpecError("efficiency.flops_fraction", f"no fraction for {', '.join(missing_eff)}")
        if self.idle_power_w >= self.tdp_w:
            raise SpecError("idle_power_w", f"{self.idle_power_w:g} W is not below tdp_w={self.tdp_w:g} W: idle is the "
                                            "board with no kernel running (H100 SXM: about 140 of 700 W)")
        needed = {"memory_bytes", "memory_bandwidth_bytes_per_s", "peak_flops_per_s", "l2_bytes",
                  "interconnect", "host_link_bytes_per_s_per_direction", "tdp_w", "idle_power_w", "price_usd_per_gpu_hour",
                  "gemm_tile_tokens"}
        if self.sparsity_2_4_speedup is not None:
            needed.add("sparsity_2_4_speedup")
        if self.l2_read_bytes_per_s is not None:
            needed.add("l2_read_bytes_per_s")
        if self.block_scaled_mma:
            needed.add("block_scaled_mma")
        for i, pair in enumerate(self.block_scaled_mma):
            if pair.peak_key not in self.peak_flops_per_s:
                raise SpecError(f"block_scaled_mma[{i}].peak_key", f"{pair.peak_key} has no peak_flops_per_s entry; "
                                                                   f"use one of {', '.join(self.peak_flops_per_s)}")
        shape = [k for k in ("sm_count", "gemm_tile_m", "gemm_tile_n") if getattr(self, k) is not None]
        if shape and len(shape) != 3:
            raise SpecError("sm_count", "sm_count, gemm_tile_m and gemm_tile_n go together (the shape-aware GEMM model)")
        needed.update(shape)
        missing = sorted(needed - set(self.sources))
        if missing:
            raise SpecError("sources", f"no source for {', '.join(missing)}")
        return self

    def with_price(self, usd_per_gpu_hour: float, source: str = "user override") -> "HardwareProfile":
        """The same device at another price per GPU-hour (a quote, a reserved rate), its source recorded in
        `sources['price_usd_per_gpu_hour']`. Every cost figure downstream scales with it."""
        if isinstance(usd_per_gpu_hour, bool) or not isinstance(usd_per_gpu_hour, (int, float)) or not (
                usd_per_gpu_hour > 0 and math.isfinite(usd_per_gpu_hour)):
            raise SpecError("price_usd_per_gpu_hour", f"must be a positive number of USD per GPU-hour, got {usd_per_gpu_hour!r}")
        return self.model_copy(update={"price_usd_per_gpu_hour": float(usd_per_gpu_hour), "price_kind": "override",
                                       "sources": {**self.sources, "price_usd_per_gpu_hour": source}})

    @property
    def price_note(self) -> str:
        """'' for a price on PRICE_BASIS, else what it is instead ('price: ESTIMATE', ...), shown beside it."""
        return {"basis": "", "other": "price: other provider", "estimate": "price: ESTIMATE",
                "override": "price: override"}[self.price_kind]

    def peak_flops(self, key: str, field: str = "activation_dtype") -> float:
        """Dense peak FLOP/s for a compute dtype key; a clear error where the hardware lacks it."""
        if key not in self.peak_flops_per_s:
            have = ", ".join(k for k in PEAK_KEYS if k in self.peak_flops_per_s)
            raise SpecError(field, f"{self.name} has no {key} tensor-core support; it computes in {have}")
        return self.peak_flops_per_s[key]

    def native_block_scaled(self, weights, act) -> BlockScaledMma | None:
        """The `block_scaled_mma` pair a GEMM of `weights` (a `dtypes.QuantScheme`) with `act` activations is, or None
        (dequantized to the activation format where the weights are narrower: a weight-only kernel)."""
        return next((pair for pair in self.block_scaled_mma if pair.takes(weights, act)), None)

    def ridge_point_flops_per_byte(self, key: str = "bf16") -> float:
        """Arithmetic intensity where compute and memory time are equal: peak FLOP/s / peak bytes/s.

        H100 SXM: 989e12 / 3.35e12 = 295 FLOP/byte at BF16; 590 at FP8.
        """
        return self.peak_flops(key) / self.memory_bandwidth_bytes_per_s


def hardware_labels(hws) -> list[str]:
    """Display names of profiles shown side by side: each profile's `name`, followed by its id in brackets
    where two different profiles share a name (a user's edited copy beside the shipped file), and by its mode
    too where one id appears in both modes (a device calibrated beside its analytical twin:
    "NVIDIA H200 [h200 calibrated]", "NVIDIA H200 [h200 analytical]")."""
    ids = [h.id or h.name for h in hws]
    modes_per_id: dict[str, set[str]] = {}
    for key, h in zip(ids, hws):
        modes_per_id.setdefault(key, set()).add(h.mode)
    keys = [(h.name, key if len(modes_per_id[key]) == 1 else f"{key} {h.mode}") for key, h in zip(ids, hws)]
    ids_per_name: dict[str, set[str]] = {}
    for name, key in keys:
        ids_per_name.setdefault(name, set()).add(key)
    return [f"{name} [{key}]" if len(ids_per_name[name]) > 1 else name for name, key in keys]
