"""Unit constants. Everything inside the library is SI: bytes, bytes/s, FLOP/s, s.

Rates use decimal prefixes (1 TB/s = 1e12 bytes/s, as datasheets quote them) and are written as
plain powers of ten (`3.35e12`); capacities labelled GiB use binary prefixes. Conversion for humans
happens only in `fmt`.
"""

from __future__ import annotations

GIB = 2**30  # bytes in a GiB (the runtime reserve is quoted in GiB)
SECONDS_PER_HOUR = 3600.0  # prices are per GPU-hour
