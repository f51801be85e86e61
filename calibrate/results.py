"""Result files: atomic writes, one file per benchmark, and resumption.

Layout of a results folder (`calibrate/results/<device-slug>/` by default):

    environment.json              device, driver, CUDA, torch, clocks, date, command of the last run
    bench/<benchmark>.json        one per benchmark: {"complete": bool, "environment": {...}, "rows": [...]}
    calibration.json              the calibrated profile (roofline/calibration.py), when a base profile is known
    calibration.md, *.svg         a summary of the curves
    validation/...                `roofline validate` output (see validate.py)

Every file is written to a temporary file in the same folder, flushed, fsync'ed and moved over
the target with `os.replace`, so an interrupted run never leaves half a file. A benchmark
interrupted part-way writes what it measured with `complete: false`.

Resumption: with `resume=True` (the default) a benchmark whose file is complete and whose
`fingerprint` (device name, driver, CUDA, torch, grid) matches this run is skipped; any other
is run again and overwritten. `overwrite=True` runs everything again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from roofline.files import write_atomic  # the one atomic write (re-exported: callers import it from here)


def write_json(path: str | Path, data: Any) -> Path:
    return write_atomic(path, json.dumps(data, indent=1, default=_jsonable) + "\n")


def _jsonable(x):
    if hasattr(x, "item"):
        return x.item()
    if isinstance(x, tuple):
        return list(x)
    raise TypeError(f"cannot write {type(x).__name__} to JSON")


def read_json(path: str | Path) -> Any | None:
    """The parsed file, or None when it is missing or not valid JSON (a foreign or damaged file)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def fingerprint(env: dict, grid_name: str, grid_repr: str) -> dict:
    """What must be equal for a finished benchmark to be reused."""
    keys = ("device_name", "device_kind", "driver_version", "cuda_version", "torch_version")
    return {**{k: env.get(k) for k in keys}, "grid": grid_name, "grid_hash": hashlib.sha256(grid_repr.encode()).hexdigest()[:16]}


def bench_path(out: Path, name: str) -> Path:
    return out / "bench" / f"{name}.json"


def reusable(path: Path, fp: dict) -> bool:
    doc = read_json(path)
    return bool(doc and doc.get("complete") is True and doc.get("fingerprint") == fp)


def load_rows(out: Path, name: str) -> list[dict]:
    doc = read_json(bench_path(out, name))
    return list(doc.get("rows", [])) if doc else []
