"""`roofline hardware`: the shipped hardware profiles."""

from __future__ import annotations

import json

from .. import fmt
from ..hardware import PRICE_BASIS
from ..registry import list_hardware, load_hardware

HELP = "list the shipped hardware profiles"
DESCRIPTION = None


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="every profile, as JSON")


def run(a) -> str:
    ids = list_hardware()
    hws = [load_hardware(i) for i in ids]
    if a.json:
        return json.dumps([{"id": i, **h.model_dump()} for i, h in zip(ids, hws)], indent=2)
    rows = [[i, fmt.gigabytes(h.memory_bytes), fmt.rate(h.memory_bandwidth_bytes_per_s, "B/s"),
             fmt.rate(h.peak_flops_per_s["bf16"], "FLOP/s"), fmt.rate(h.peak_flops_per_s.get("fp8", 0), "FLOP/s") if "fp8" in h.peak_flops_per_s else "-",
             fmt.rate(h.interconnect.bytes_per_s_per_direction, "B/s"), f"{fmt.usd(h.price_usd_per_gpu_hour)} ({h.price_date})",
             h.price_note.removeprefix("price: ") or "basis"] for i, h in zip(ids, hws)]
    table = fmt.table(["id", "memory", "HBM bandwidth", "bf16 dense", "fp8 dense", "link/direction", "$/GPU-hour", "price"], rows)
    return table + f"\n\nPrice basis: {PRICE_BASIS}."
