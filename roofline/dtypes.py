"""The number formats the simulator knows, and what storing a tensor in each costs.

Storage bytes of a quantized matrix are the packed elements plus their
quantization metadata:

    bytes = N·K·bits/8 + n_groups · (scale_bits + zero_point_bits) / 8

with `n_groups` set by the granularity of the scales:

* ``tensor``: one scale for the whole matrix (FP8 per-tensor),
* ``row``:    one scale per output row, i.e. per K-long reduction vector
              (INT8 per-channel; for the KV cache, per token and head),
* ``group``:  one scale per `group_size` consecutive elements of a row
              (INT4 GPTQ/AWQ, NF4, MXFP4), i.e. N · ceil(K / group_size),
* ``block``:  one scale per `group_size` x `group_size` tile (block-scaled FP8
              as DeepSeek-V3 ships it, 128 x 128), i.e. ceil(N / b) · ceil(K / b).

Worked number (seed text): a 2,048 x 2,048 matrix in groups of 32 has
2,048 · 2,048 / 32 = 131,072 scales; with FP16 scales that is 262,144 bytes
on top of the 2,097,152 bytes of INT4 elements, i.e. 4.5 bits per weight.

Compute dtypes pick the tensor-core peak a GEMM runs at (`peak_key`): weights
stored in INT4 with BF16 activations (W4A16) are dequantized and computed at
the BF16 peak; W8A8 and FP8 compute at the 8-bit peak, which doubles the
ridge point on an H100 (989 -> 1,979 TFLOP/s dense at 3.35 TB/s).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .errors import SpecError

Granularity = Literal["none", "tensor", "row", "group", "block"]

# Vector-unit operations to turn one stored weight into the compute format inside a weight-only
# (W4A16 / W8A16) GEMM: an int->float convert and a scale multiply (an FMA absorbs a zero point),
# plus a shift-and-mask unpack for 4-bit formats (a table lookup for NF4). Approximate instruction
# counts of Marlin / LUT-GEMM style kernels; W8A8, FP8 and FP4 tensor cores read their format directly, and so do
# block-scaled MMAs of mixed formats where a GPU has them (`hardware.BlockScaledMma`: MXFP4 x MXFP8 on Blackwell).
DEQUANT_OPS_PER_WEIGHT = {8: 2, 4: 3}


@dataclass(frozen=True)
class DType:
    """One number format.

    bits: storage bits per element (tf32 is a compute-only mode of fp32 storage).
    peak_key: key into `HardwareProfile.peak_flops_per_s` when used for compute,
        or None when the format cannot be a compute dtype (nf4 is storage-only).
    granularity, group_size, scale_bits: default quantization metadata when the
        format stores weights (or the KV cache); `none` for plain floats.
    source: where the default metadata layout comes from.
    """

    name: str
    bits: int
    kind: Literal["float", "int"]
    peak_key: str | None
    granularity: Granularity = "none"
    group_size: int | None = None
    scale_bits: int = 0
    source: str = ""

    @property
    def bytes(self) -> float:
        """Bytes per element without metadata (0.5 for 4-bit formats)."""
        return self.bits / 8

    @property
    def is_quantized(self) -> bool:
        return self.granularity != "none"


_TABLE: dict[str, DType] = {
    d.name: d
    for d in (
        DType("fp32", 32, "float", "fp32"),
        DType("tf32", 32, "float", "tf32", source="NVIDIA Ampere whitepaper: TF32 is FP32 storage, 10-bit mantissa in the tensor core"),
        DType("bf16", 16, "float", "bf16"),
        DType("fp16", 16, "float", "fp16"),
        DType("fp8_e4m3", 8, "float", "fp8", "tensor", None, 32,
              "per-tensor FP32 scale, as in Transformer Engine / vLLM fp8 checkpoints"),
        DType("fp8_e5m2", 8, "float", "fp8", "tensor", None, 32,
              "per-tensor FP32 scale, as in Transformer Engine"),
        DType("int8", 8, "int", "int8", "row", None, 16,
              "per-output-channel FP16 scale (LLM.int8(), SmoothQuant W8A8)"),
        DType("int4", 4, "int", "int4", "group", 128, 16,
              "groups of 128 with FP16 scales (GPTQ / AWQ default)"),
        DType("nf4", 4, "float", None, "group", 64, 32,
              "blocks of 64 with an FP32 absmax, no double quantization (QLoRA / bitsandbytes)"),
        DType("fp4", 4, "float", "fp4", "group", 32, 8,
              "E2M1 in blocks of 32 with an 8-bit E8M0 scale (OCP Microscaling MXFP4 v1.0)"),
    )
}

ALIASES = {"fp8": "fp8_e4m3", "float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "half": "fp16"}


def dtype_names() -> list[str]:
    """Every accepted dtype name, aliases included, sorted."""
    return sorted([*_TABLE, *ALIASES])


def get_dtype(name: str, field: str = "dtype") -> DType:
    """Look a format up by name (case-insensitive; `fp8` means `fp8_e4m3`)."""
    key = str(name).lower()
    key = ALIASES.get(key, key)
    if key not in _TABLE:
        raise SpecError(field, f"unknown dtype {name!r}; choose one of {', '.join(dtype_names())}")
    return _TABLE[key]


@dataclass(frozen=True)
class QuantScheme:
    """How one tensor family (weights or KV cache) is stored.

    The defaults come from the dtype's table row; a deployment may override
    the group size, scale width and asymmetric zero points.
    """

    dtype: DType
    granularity: Granularity
    group_size: int | None
    scale_bits: int
    zero_point_bits: int

    @classmethod
    def of(
        cls,
        dtype: DType,
        group_size: int | None = None,
        scale_dtype: str | None = None,
        zero_point: bool = False,
        field: str = "weight",
        granularity: Granularity | None = None,
    ) -> "QuantScheme":
        if not dtype.is_quantized:
            for value, name in ((group_size, "group_size"), (scale_dtype, "scale_dtype")):
                if value is not None:
                    raise SpecError(f"{field}_{name}", f"applies only to quantized dtypes, not {dtype.name}")
            if zero_point:
                raise SpecError(f"{field}_zero_point", f"applies only to quantized dtypes, not {dtype.name}")
            return cls(dtype, "none", None, 0, 0)
        if granularity is not None and not dtype.is_quantized:
            raise SpecError(f"{field}_scale_granularity", f"applies only to quantized dtypes, not {dtype.name}")
        chosen = granularity
        granularity = dtype.granularity
        if group_size is not None:
            if group_size <= 0:
                raise SpecError(f"{field}_group_size", f"must be a positive number of elements, got {group_size}")
            granularity = "group"
        else:
            group_size = dtype.group_size
        if chosen is not None:
            if chosen in ("group", "block") and group_size is None:
                raise SpecError(f"{field}_group_size", f"{chosen} scales need a group size (e.g. 128)")
            granularity = chosen
        scale_bits = get_dtype(scale_dtype, f"{field}_scale_dtype").bits if scale_dtype else dtype.scale_bits
        zero_point_bits = dtype.bits if zero_point else 0
        return cls(dtype, granularity, group_size, scale_bits, zero_point_bits)

    def n_groups(self, rows: int, k: int):
        """Number of scales for a `rows` x `k` matrix (k = the reduction / row length).

        Works on numpy arrays as well as ints.
        """
        if self.granularity == "none":
            return 0
        if self.granularity == "tensor":
            return 1
        if self.granularity == "row":
            return rows
        if self.granularity == "block":
            return _ceil_div(rows, self.group_size) * _ceil_div(k, self.group_size)
        return rows * _ceil_div(k, self.group_size)

    def matrix_bytes(self, rows, k):
        """Bytes to store a `rows` x `k` tensor: elements plus scales and zero points."""
        meta_bits = self.scale_bits + self.zero_point_bits
        return rows * k * self.dtype.bits / 8 + self.n_groups(rows, k) * meta_bits / 8

    def bits_per_element(self, k: int) -> float:
        """Effective storage bits per element for rows of length k (metadata included).

        INT4, groups of 128, FP16 scales: 4 + 16/128 = 4.125 bits.
        """
        rows = self.group_size if self.granularity == "block" else 1
        return self.matrix_bytes(rows, k) * 8 / (rows * k)


def _ceil_div(a, b):
    if isinstance(a, int) and isinstance(b, int):
        return -(-a // b)
    import numpy as np

    return np.ceil(np.asarray(a) / b)


__all__ = ["DType", "QuantScheme", "get_dtype", "dtype_names", "ALIASES"]
