"""The one place that turns SI values into text for people. Nothing here computes a figure."""

from __future__ import annotations

import math


def seconds(x: float) -> str:
    """0.0415 -> '41.5 ms'."""
    if x is None or math.isnan(x):
        return "n/a"
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x / 1e-9:.3g} ns"


def gigabytes(x: float) -> str:
    """Decimal gigabytes: 140e9 -> '140.0 GB'."""
    return f"{x / 1e9:,.1f} GB"


def gibibytes(x: float) -> str:
    """Binary gibibytes, for sizes quoted that way (the runtime reserve): 2**31 -> '2 GiB'."""
    return f"{x / 2**30:g} GiB"


def mebibytes(x: float) -> str:
    """Binary mebibytes, whole: 64 * 2**20 -> '64 MiB'."""
    return f"{x / 2**20:,.0f} MiB"


def billions(x: float) -> str:
    """A count in billions, e.g. parameters: 70.55e9 -> '70.6B'."""
    return f"{x / 1e9:,.1f}B"


def rate(x: float, unit: str) -> str:
    """Decimal-prefixed rate: rate(3.35e12, 'B/s') -> '3.35 TB/s'."""
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"


def fraction(x: float) -> str:
    """0.8291 -> '82.9%'."""
    return f"{100 * x:.1f}%"


def replica(tp: int, pp: int = 1, ep: int = 1, nodes: int = 1, attention_dp: bool = False) -> str:
    """One replica's shape: 'tp8', 'tp8 pp2, 2 nodes', 'ep16, 2 nodes', 'tp8 dp-attention' (attention data-parallel over
    the tp GPUs); 'n/a' when none was placed (tp 0)."""
    if not tp:
        return "n/a"
    shape = f"ep{ep}" if ep > 1 else f"tp{tp}" + (f" pp{pp}" if pp > 1 else "") + (" dp-attention" if attention_dp else "")
    return shape + (f", {nodes} nodes" if nodes > 1 else "")


def replica_of(row) -> str:
    """`replica` of a planner or report row (a pandas row or named tuple with tp, pp, ep, nodes_per_replica, and
    attention_dp where its frame has the column)."""
    return replica(row.tp, row.pp, row.ep, row.nodes_per_replica, bool(getattr(row, "attention_dp", False)))


def replica_of_deployment(dep) -> str:
    """`replica` of a Deployment (its tp, pp, ep and attention_dp): 'tp8 dp-attention', 'tp4 pp2'. It names no node
    count (a Deployment does not know the device's NVLink domain; a planner row's `nodes_per_replica` does)."""
    return replica(dep.tp, dep.pp, dep.ep, 1, dep.attention_dp)


def quantity(n: float, noun: str, plural: str | None = None) -> str:
    """A count with its noun, singular for exactly one: quantity(1, 'replica') -> '1 replica', quantity(8, 'GPU') -> '8 GPUs'."""
    return f"{count(n)} {noun if n == 1 else plural or noun + 's'}"


def usd(x: float) -> str:
    return f"${x:,.2f}" if x >= 0.01 else f"${x:.4f}"


def count(x: float) -> str:
    return f"{x:,.0f}"


def energy(j_per_token: float, kwh_per_million: float) -> str:
    """Energy per output token and per million: (0.5015, 0.1393) -> '0.502 J/token (0.139 kWh per 1M)'."""
    if j_per_token is None or math.isnan(j_per_token):
        return "n/a"
    return f"{j_per_token:.3g} J/token ({kwh_per_million:.3g} kWh per 1M)"


def watts(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:,.0f} W"


def table(header: list[str], rows: list[list[str]]) -> str:
    """Plain monospaced table: first column left-aligned, the rest right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    def line(r):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def band(b, one=seconds) -> str:
    """An error band: '18 ms – 24.6 ms (n=212)', n the published runs it was built from; '' when there is none."""
    if b is None:
        return ""
    return f"{span(b.low, b.high, one)} (n={b.rows:,})"


def span(low: float, high: float, one=seconds) -> str:
    """A range: '18 ms – 24.6 ms'; '' when either end is missing (NaN), as for a figure with no band."""
    if low != low or high != high:
        return ""
    return f"{one(low)} – {one(high)}"


def _layout_note(dep) -> str:
    """' (tp4 pp2)', ' (ep8)', ' (tp8 dp-attention)': the replica's shape where it is not tp alone; '' for tp alone."""
    if dep.is_tp_replica:
        return ""
    return f" ({replica_of_deployment(dep)})"


def headline_rows(p) -> list[tuple[str, str]]:
    """The headline figures of one Prediction as (label, text) rows, for the CLI and the dashboard alike.

    Labels are unique (tables index by them). Cost reads "n/a" when the scenario does not fit.
    """
    cost = usd(p.usd_per_million_output_tokens) if p.fits else "n/a (does not fit)"
    return [
        ("model", p.model),
        ("GPUs (tensor parallel)", str(p.gpus_per_replica) + _layout_note(p.deployment)),
        ("fits in memory", "yes" if p.fits else "NO"),
        ("memory per GPU: required", gigabytes(p.memory_required_bytes_per_gpu)),
        ("  available", gigabytes(p.memory_available_bytes_per_gpu)),
        ("  weights (+quant. scales)", gigabytes(p.weight_bytes)),
        ("  KV cache", gigabytes(p.kv_cache_bytes)),
        ("  activation workspace", gigabytes(p.activation_workspace_bytes)),
        ("  runtime reserve", gigabytes(p.runtime_reserve_bytes)),
        ("max batch at these lengths", count(p.max_batch_size_fits)),
        ("TTFT", seconds(p.ttft_s)),
        ("  80% band of TTFT", band(p.bands.get("ttft_s")) or "n/a"),
        ("  TTFT floor (datasheet peaks)", seconds(p.ttft_floor_s)),
        ("TPOT (mean)", seconds(p.tpot_s)),
        ("  80% band of TPOT", band(p.bands.get("tpot_s")) or "n/a"),
        ("  TPOT floor (datasheet peaks)", seconds(p.tpot_floor_s)),
        ("  first / last step", f"{seconds(p.tpot_first_step_s)} / {seconds(p.tpot_last_step_s)}"),
        ("end-to-end latency", seconds(p.e2e_latency_s)),
        ("  80% band of latency", band(p.bands.get("e2e_latency_s")) or "n/a"),
        ("output tokens/s", count(p.output_tokens_per_s)),
        ("  80% band of tokens/s", band(p.bands.get("output_tokens_per_s"), count) or "n/a"),
        ("  per GPU", count(p.output_tokens_per_s_per_gpu)),
        ("prefill: bound, MFU, MBU", f"{p.prefill_bound}, {fraction(p.mfu_prefill)}, {fraction(p.mbu_prefill)}"),
        ("decode: bound, MBU, MFU", f"{p.decode_bound}, {fraction(p.mbu_decode)}, {fraction(p.mfu_decode)}"),
        ("price, all GPUs", f"{usd(p.usd_per_hour)}/h"),
        ("cost per 1M output tokens", cost),
        ("energy per output token", energy(p.energy_per_output_token_j, p.kwh_per_million_output_tokens)),
        ("  mean power per GPU", watts(p.mean_power_w_per_gpu)),
        ("timing", p.mode + (f" ({p.calibration_id})" if p.calibration_id else "")),
    ]
