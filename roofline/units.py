"""Unit constants. Everything inside the library is SI: bytes, bytes/s, FLOP/s, s.

Rates use decimal prefixes (1 TB/s = 1e12 bytes/s, as datasheets quote them);
capacities labelled GiB use binary prefixes. Conversion happens only in `fmt`.
"""

from __future__ import annotations

KB = 1e3
MB = 1e6
GB = 1e9
TB = 1e12
GIB = 2**30
MIB = 2**20

KILO = 1e3
MEGA = 1e6
GIGA = 1e9
TERA = 1e12
PETA = 1e15

US = 1e-6  # microsecond, in seconds
MS = 1e-3  # millisecond, in seconds

SECONDS_PER_HOUR = 3600.0
