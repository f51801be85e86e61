"""The report's options table, straight from the capacity planner's frame: `plan` in the scenario's serving mode
(continuous batching, or static batches: `plan.SearchSpace.serving`), one call per model, the frames joined and
put in the planner's order (`plan.rank`), and the few columns the report shows that the planner does not
(e2e latency, $/M at full load, the note) derived column by column from it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

from .. import fmt
from ..engine import usd_per_million_tokens
from ..plan import ATTENTION_LAYOUTS, plan, rank
from ..registry import load_model
from .scenario import NO_SLO_S, Scenario


# ------------------------------------------------------------ the swap price
@dataclass(frozen=True)
class SwapPrice:
    """The prices at which the ranking's top two options trade places (USD per GPU-hour).

    Every option's $/M output tokens is its GPUs x price / 3600 / demanded tokens/s x 10⁶: linear in its
    device's price, with the fleet shape fixed by the traffic and the SLOs, not by the price. The two tie
    when price_1 · gpus_1 = price_2 · gpus_2, i.e. at

        top_at = price_1 · M_2 / M_1      (the top device's price above which the runner-up ranks first)
        runner_at = price_2 · M_1 / M_2   (the runner-up's price below which it ranks first)

    with M_1 <= M_2 their $/M. Worked number: $3.95 (M_1 $0.50) vs $1.95 (M_2 $0.60): the top swaps
    above 3.95 · 0.60 / 0.50 = $4.74, the runner-up below 1.95 · 0.50 / 0.60 = $1.625.
    """

    top_hardware_id: str
    top_price_usd_per_gpu_hour: float
    top_swap_price_usd_per_gpu_hour: float
    runner_hardware_id: str
    runner_price_usd_per_gpu_hour: float
    runner_swap_price_usd_per_gpu_hour: float


def swap_price(table: pd.DataFrame) -> SwapPrice | None:
    """The `SwapPrice` of a ranked options table; None with fewer than two ranked options, or when both
    run on one device (a price change moves them together)."""
    top = table[table["rank"].isin([1, 2])].sort_values("rank")
    if len(top) < 2 or top.iloc[0]["hardware_id"] == top.iloc[1]["hardware_id"]:
        return None
    a, b = top.iloc[0], top.iloc[1]
    m1, m2 = float(a["usd_per_million_output_tokens"]), float(b["usd_per_million_output_tokens"])
    p1, p2 = float(a["price_usd_per_gpu_hour"]), float(b["price_usd_per_gpu_hour"])
    return SwapPrice(a["hardware_id"], p1, p1 * m2 / m1, b["hardware_id"], p2, p2 * m1 / m2)


# ------------------------------------------------------------ progress
class Progress:
    """"\\r[#####.....] 12/40 h100-sxm" on a terminal, one line per item otherwise; silent when disabled."""

    def __init__(self, total: int, enabled: bool = True, stream: IO[str] | None = None, width: int = 20):
        self.total, self.enabled, self.width, self.done = total, enabled, width, 0
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def step(self, label: str) -> None:
        self.done += 1
        if not self.enabled:
            return
        if self.tty:
            filled = self.width * self.done // max(self.total, 1)
            bar = "#" * filled + "." * (self.width - filled)
            self.stream.write(f"\r[{bar}] {self.done}/{self.total} {label}\x1b[K")
            if self.done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(f"[{self.done}/{self.total}] {label}\n")
        self.stream.flush()


# ------------------------------------------------------------ the table
COLUMNS = [
    "rank", "model", "hardware", "model_id", "hardware_id", "feasible", "binding_constraint",
    "tp", "pp", "ep", "attention_dp", "nodes_per_replica", "batch_size", "max_batch_size_fits", "output_tokens_per_s_per_replica", "replicas", "gpus",
    "usd_per_hour", "usd_per_million_output_tokens", "usd_per_million_output_tokens_full_load",
    "energy_per_output_token_j", "kwh_per_million_output_tokens",
    "ttft_s", "tpot_s", "e2e_latency_s", "ttft_band_low_s", "ttft_band_high_s", "tpot_band_low_s", "tpot_band_high_s",
    "memory_required_bytes_per_gpu", "memory_available_bytes_per_gpu",
    "price_usd_per_gpu_hour", "price_date", "price_note", "efficiency_source_kind", "note",
]
"""The report's columns: the planner's (`plan.COLUMNS`) under the report's names, plus model, e2e, full-load cost and the note."""


def evaluate_scenario(scenario: Scenario, progress: bool = True, stream: IO[str] | None = None) -> pd.DataFrame:
    """Every (model, hardware) pair of the scenario: the planner's best option per hardware for each model, in
    the planner's order over all of them (feasible first, cheapest fleet first; `plan.rank`)."""
    import pandas as pd

    for m in scenario.models:  # number formats no device can run together: one error naming the field, not "unsupported" everywhere
        scenario.deployment().resolved(load_model(m))
    bar = Progress(len(scenario.models), progress, stream)
    frames = []
    for m in scenario.models:
        frames.append(planned(m, scenario))
        bar.step(m)
    df = rank(pd.concat(frames, ignore_index=True).drop(columns="rank"))
    return report_columns(df, scenario)


def planned(model_id: str, scenario: Scenario) -> pd.DataFrame:
    """The planner's frame for one model of the scenario (its best option per hardware, or the option closest
    to feasible with its reason), tagged with the model. An unset SLO is no constraint (`NO_SLO_S`)."""
    s = scenario
    model = load_model(model_id)
    profiles = [s.hardware_profile(h) for h in s.hardware]  # prices and calibration applied; their ids come back as hardware_id
    df = plan(model, s.requests_per_s, s.prompt_tokens, s.output_tokens, s.ttft_slo_s or NO_SLO_S, s.tpot_slo_s or NO_SLO_S,
              hardware=profiles, ttft_percentile=s.ttft_percentile, max_batch_size=s.max_batch_size,
              chunk_tokens=s.chunk_tokens, precisions={"scenario": s.deployment()}, serving=s.serving, concurrency=s.concurrency,
              engine=s.engine, attention_dp=ATTENTION_LAYOUTS[s.attention_dp])
    df.insert(1, "model_id", model_id)
    df.insert(1, "model", model.name)
    return df


def report_columns(df: pd.DataFrame, scenario: Scenario) -> pd.DataFrame:
    """The planner's columns as the report names and shows them (`COLUMNS`):

    ttft_s is the TTFT at the SLO percentile (a static batch: its prefill); e2e = mean TTFT + TPOT · (E[O] - 1);
    $/M at full load is one replica at its largest stable rate: gpus_per_replica · price / (capacity · E[O] · 3600) · 10⁶;
    the note is the replica shape with the planner's reason (continuous serving: the mean batch, the prefill
    server's load and the TTFT at the percentile). A row with no replica shape (an unsupported format) shows
    tp 0 and one GPU per pp, ep and node; `attention_dp` says whether the row runs attention data-parallel over its tp GPUs."""
    s = scenario
    o = s.output_tokens_mean
    hw = {h: s.hardware_profile(h) for h in dict.fromkeys(df["hardware_id"])}
    placed = df["tp"].fillna(0).astype(int) > 0
    feasible = df["feasible"].astype(bool)
    out = df[["rank", "model", "hardware", "model_id", "hardware_id", "feasible", "binding_constraint"]].copy()
    out["tp"] = df["tp"].fillna(0).astype(int)
    for c in ("pp", "ep", "nodes_per_replica"):
        out[c] = df[c].where(placed, 1).fillna(1).astype(int)
    out.insert(out.columns.get_loc("ep") + 1, "attention_dp", df["attention_dp"].where(placed, False).fillna(False).astype(bool))
    out["batch_size"] = df["batch_size"].where(feasible, 0.0)
    out["max_batch_size_fits"] = df["max_batch_size_fits"].where(feasible, 0).fillna(0).astype(int)
    for c in ("output_tokens_per_s_per_replica", "replicas", "gpus", "usd_per_hour", "usd_per_million_output_tokens"):
        out[c] = df[c].astype(float)  # NaN where infeasible
    out["usd_per_million_output_tokens_full_load"] = usd_per_million_tokens(
        df["gpus_per_replica"].astype(float) * df["price_usd_per_gpu_hour"], df["capacity_requests_per_s_per_replica"] * o)
    out["ttft_s"], out["tpot_s"] = df["ttft_at_slo_percentile_s"], df["tpot_s"]
    out["e2e_latency_s"] = df["ttft_mean_s"] + df["tpot_s"] * (o - 1)
    out["ttft_band_low_s"], out["ttft_band_high_s"] = df["ttft_at_slo_percentile_band_low_s"], df["ttft_at_slo_percentile_band_high_s"]
    out["tpot_band_low_s"], out["tpot_band_high_s"] = df["tpot_band_low_s"], df["tpot_band_high_s"]
    for c in ("energy_per_output_token_j", "kwh_per_million_output_tokens"):
        out[c] = df[c].astype(float).where(feasible)  # the fleet's board energy (`roofline.energy`); NaN where infeasible
    out["memory_required_bytes_per_gpu"] = df["memory_required_bytes_per_gpu"]
    out["memory_available_bytes_per_gpu"] = df["memory_available_bytes_per_gpu"]  # the engine's share of the GPU
    out["price_usd_per_gpu_hour"] = df["price_usd_per_gpu_hour"]
    out["price_date"] = [hw[h].price_date for h in df["hardware_id"]]
    out["price_note"] = [hw[h].price_note for h in df["hardware_id"]]
    out["efficiency_source_kind"] = [hw[h].efficiency.source_kind for h in df["hardware_id"]]
    out["note"] = [_note(r, s) for r in df.itertuples(index=False)]
    return out[COLUMNS]


def _note(r, s: Scenario) -> str:
    """What a row's binding constraint is about, in words."""
    if not r.feasible:
        return f"{fmt.replica_of(r)}: {r.reason}" if r.tp else r.reason
    if s.serving == "static":
        return r.reason
    return (f"{fmt.replica_of(r)}; mean batch {r.batch_size:.1f} of {int(r.max_batch_size_fits)} that fit; "
            f"prefill busy {r.prefill_utilization:.0%}; p{100 * s.ttft_percentile:g} TTFT {fmt.seconds(r.ttft_at_slo_percentile_s)}")
