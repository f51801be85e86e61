"""Unit constants. Everything inside the library is SI: bytes, bytes/s, FLOP/s, s.

Rates use decimal prefixes (1 TB/s = 1e12 bytes/s, as datasheets quote them) and are written as
plain powers of ten (`3.35e12`); capacities labelled GiB use binary prefixes. Conversion for humans
happens only in `fmt`.
"""

from __future__ import annotations

import numpy as np

GIB = 2**30  # bytes in a GiB (the runtime reserve is quoted in GiB)
SECONDS_PER_HOUR = 3600.0  # prices are per GPU-hour
# A row count within this many tiles above a whole number of tiles is padded to that whole number (`roofline`,
# `gemm_shapes`, `calibration`): the mean rows of a routed expert come out of floating point a hair above a whole
# tile (Mixtral at 128 tokens: 256 rows over 8 - 1e-15 touched experts = 32.0000000000001 rows, which ceil padded
# to 48, 1.5 x the FLOPs of the 32 the kernel computes).
TILE_SLACK = 1e-9


def tile_padded(rows, tile):
    """p(m) = ceil(m / tile) · tile: the rows a tensor-core tile of `tile` rows computes for a GEMM of m rows (the
    FLOPs a kernel really executes, and the FLOPs a measured table's fractions count), with `TILE_SLACK` so that a
    count a hair above a whole number of tiles pads to that number. Worked number: m = 17 in tiles of 16 computes 32
    rows; m = 32.0000000000001 computes 32."""
    return np.ceil(rows / tile - TILE_SLACK) * tile
