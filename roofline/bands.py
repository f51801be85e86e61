"""80% error bands on headline figures, from the published corpus.

A prediction y of a figure in family f (TTFT of a static batch, TPOT under load, offline throughput, ...;
`calibrate.corpus.family_of`) has measured counterparts in the published corpus. Their log-errors
ℓ = ln(measured / predicted) have an empirical distribution; its 10th and 90th percentiles q10, q90 held
80% of the corpus's rows. Every source weighs the same in those percentiles (each row 1/n of its source's
n rows): the band is for a new deployment, which is a new source, not one more row of the largest.

A new source falls inside [q10, q90] less often than the corpus's own rows do, because sources differ
from one another more than one source's rows do. So the percentiles are moved out by a widening δ:
each source judged by the percentiles of the others, δ is the amount that puts 80% of those held-out
rows inside (sources weighted equally; derived in calibrate/corpus.py). Then

    band(y) = [y · exp(q10 - δ), y · exp(q90 + δ)]

the range that would have held 80% of a source's measurements had that source been new. A negative q
(measured below predicted) lowers the band's floor, so a systematically optimistic predictor gets a band that sits
above its time predictions and below its throughput predictions: the band is where reality was,
not a symmetric ± around the figure.

Where at least 20 corpus rows from at least 3 sources support them, the band is that of the family within the device's
hardware class (vendor-architecture, e.g. nvidia-hopper) and/or precision class (16-bit, 8-bit
compute, weight-only); else the family's. A family with fewer than 10 rows has no band.

The entries (q10, q90, δ) are built from the corpus by `roofline validate --published --write-bands` and committed
as `error_bands.json` beside this module; they are never set by hand. The held-out (leave-one-source-out)
coverage of the bands is in calibrate/published/report/accuracy.md.
"""

import functools
import json
import math
from importlib import resources

from pydantic import BaseModel, ConfigDict, Field

from .memo import Identity, memoized

BANDS_FILE = "error_bands.json"


class Band(BaseModel):
    """The 80% band of one figure, in the figure's own unit (seconds for `_s` figures, tokens/s for rates)."""

    model_config = ConfigDict(frozen=True, defer_build=True)  # built without validating (`bands_for`): the schema waits for a dump
    low: float = Field(description="y · exp(q10 - δ)")
    high: float = Field(description="y · exp(q90 + δ)")
    level: float = Field(0.8, description="the fraction of a held-out source's published measurements the band held")
    rows: int = Field(description="published measurements it was built from")
    basis: str = Field(description="the corpus entry: family, and hardware / precision class where used")


@functools.cache
def _entries() -> tuple[float, dict]:
    text = resources.files("roofline").joinpath(BANDS_FILE).read_text(encoding="utf-8")
    doc = json.loads(text)
    return float(doc["level"]), doc["entries"]


def hardware_class(hw) -> str:
    """Vendor and architecture, lower-case and dashed: nvidia-hopper, amd-cdna-3."""
    return f"{hw.vendor}-{hw.architecture}".lower().replace(" ", "-")


def precision_class(weight_dtype: str | None, activation_dtype: str | None) -> str:
    """16-bit (native formats), 8-bit (8- or 4-bit compute: FP8, W8A8), or weight-only (W8A16, W4A16)."""
    narrow = lambda d: isinstance(d, str) and d.lower().startswith(("fp8", "int8", "int4", "nf4", "fp4"))  # noqa: E731
    if narrow(activation_dtype):
        return "8-bit"
    if narrow(weight_dtype):
        return "weight-only"
    return "16-bit"


def entry_key(entries: dict, family: str, hw_class: str, precision: str) -> str | None:
    """The most specific entry present: family x hardware x precision, x hardware, x precision, the family."""
    for key in (f"{family}|hardware_class={hw_class}|precision={precision}", f"{family}|hardware_class={hw_class}",
                f"{family}|precision={precision}", family):
        if key in entries:
            return key
    return None


def log_limits(entry: dict) -> tuple[float, float]:
    """ln(low / y), ln(high / y) of an entry: its percentiles moved out by the held-out widening δ, (q10 - δ, q90 + δ).
    (A band file written before δ was recorded has none: δ = 0, its percentiles as they are.)"""
    delta = entry.get("log_widening", 0.0)
    return entry["log_q10"] - delta, entry["log_q90"] + delta


def band(value: float, family: str, hw_class: str, precision: str) -> Band | None:
    """The band of `value` (a figure of `family`), or None where the corpus has too few rows or value is not finite."""
    return _band(value, _class_entries(*_entries(), hw_class, precision).get(family))


def _band(value: float, entry: tuple | None) -> Band | None:
    """The band of `value` from its family's entry in `_class_entries` (None: no band)."""
    if entry is None or not math.isfinite(value):
        return None
    # every field already of its type (floats, the shipped file's int count and key): the entry's band of 1 (`_class_entries`)
    # copied with this figure's ends, as `model_construct` builds it (the same fields, set, in order) without its loop
    return entry[5].model_copy(update={"low": value * entry[1], "high": value * entry[2]})


@memoized(lambda level, entries, hw_class, precision: (level, Identity(entries), hw_class, precision))
def _class_entries(level: float, entries: dict, hw_class: str, precision: str) -> dict[str, tuple[str, float, float, float, int, Band]]:
    """{family: (entry key, exp(q10 - δ), exp(q90 + δ), level, rows, the band of a figure of 1)} of the entries
    (`entry_key`, `log_limits`) the figures of each family of `entries` take on this hardware and precision class (a
    family without one left out): looked up once per class, not per figure (the entries, loaded once, are keyed by
    identity)."""
    out = {}
    for family in {k.split("|")[0] for k in entries}:
        key = entry_key(entries, family, hw_class, precision)
        if key is not None:
            lo, hi = log_limits(entries[key])
            low, high, rows = math.exp(lo), math.exp(hi), entries[key]["n"]
            out[family] = key, low, high, level, rows, Band.model_construct(low=low, high=high, level=level, rows=rows, basis=key)
    return out


def bands_for(figures: dict[str, tuple[float, str]], hw, weight_dtype: str | None, activation_dtype: str | None) -> dict[str, Band]:
    """Bands of several figures of one scenario: {name: (value, family)} -> {name: Band} (figures without one left out)."""
    found = _class_entries(*_entries(), hardware_class(hw), precision_class(weight_dtype, activation_dtype))
    out = {}
    for name, (value, family) in figures.items():
        b = _band(value, found.get(family))
        if b is not None:
            out[name] = b
    return out


def band_limits(values, family: str, hw_classes, precisions) -> tuple[list[float], list[float]]:
    """Low and high ends of the bands of a column of figures of one family, row by row (NaN where a row has
    no band or no finite value): the planner's and the report's tables."""
    low, high = [], []
    for value, hc, pc in zip(values, hw_classes, precisions):
        b = band(float(value), family, hc, pc) if value is not None and value == value else None
        low.append(b.low if b else math.nan)
        high.append(b.high if b else math.nan)
    return low, high
