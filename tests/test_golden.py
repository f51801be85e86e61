"""Golden outputs stay identical: every case of tests/golden/make_golden.py recomputed and compared with its file.

The files were written on the code before issue 11's restructure; a refactor that changes any printed
figure, label, row order or column fails here. Floats may differ only by rounding noise (1e-12 relative,
the order of a reassociated sum); everything else must be equal. A change on purpose regenerates the file
with `python tests/golden/make_golden.py NAME` and says why in the commit.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "golden"))
import make_golden  # noqa: E402

REL = 1e-12


def _diff(a, b, where: str = "") -> str | None:
    """The first difference between two JSON values, or None."""
    if isinstance(a, bool) or isinstance(b, bool):
        return None if a is b or a == b and type(a) is type(b) else f"{where}: {a!r} != {b!r}"
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return None
        if a == b:
            return None
        if math.isfinite(a) and math.isfinite(b) and abs(a - b) <= REL * max(abs(a), abs(b)):
            return None
        return f"{where}: {a!r} != {b!r}"
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return f"{where}: keys differ: {sorted(set(a) ^ set(b))}"
        for k in a:
            d = _diff(a[k], b[k], f"{where}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = _diff(x, y, f"{where}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{where}: {a!r} != {b!r}"


def test_diff_tolerates_only_float_noise():
    assert _diff({"x": 1.0, "y": [math.nan, "a"]}, {"x": 1.0 + 1e-15, "y": [math.nan, "a"]}) is None
    assert _diff({"x": 1.0}, {"x": 1.0 + 1e-9}) is not None
    assert _diff({"x": True}, {"x": 1}) is not None
    assert _diff([1, 2], [1, 2, 3]) is not None
    assert _diff({"x": "a"}, {"x": "b"}) is not None


def test_every_case_has_a_file():
    files = {p.stem for p in make_golden.HERE.glob("*.json")}
    assert files == set(make_golden.CASES)


@pytest.mark.parametrize("name", sorted(make_golden.CASES))
def test_golden(name):
    expected = json.loads(make_golden.path_of(name).read_text())
    got = json.loads(json.dumps(make_golden.compute(name), allow_nan=True))
    d = _diff(expected, got, name)
    assert d is None, d
