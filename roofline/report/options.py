"""The report's options: one operating point per (model, hardware), from the static-batch search
(`evaluate_option`) or from the capacity planner (`planned_options`), ranked into one table
(`evaluate_scenario`, with `plan.ranked`).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

from .. import fmt
from ..energy import fleet_energy_per_output_token_j, kwh_per_million
from ..engine import usd_per_million_tokens
from ..errors import SpecError
from ..plan import plan, ranked
from ..predict import Prediction, predict, predict_fitting, valid_tps
from ..registry import load_model
from ..workload import Workload
from .scenario import BATCH_CAP, MEMORY, NO_FIT, NO_SLO_S, TPOT_SLO, TTFT_SLO, UNSUPPORTED, Scenario


# ------------------------------------------------------------ one option
@dataclass(frozen=True)
class Option:
    """One (model, hardware) operating point. Seconds, bytes, USD; NaN where there is no such figure."""

    model_id: str
    model: str
    hardware_id: str
    hardware: str
    feasible: bool
    binding_constraint: str
    note: str
    tp: int
    batch_size: int
    max_batch_size_fits: int
    output_tokens_per_s_per_replica: float
    replicas: float
    gpus: float
    usd_per_hour: float
    usd_per_million_output_tokens: float
    usd_per_million_output_tokens_full_load: float
    ttft_s: float
    tpot_s: float
    e2e_latency_s: float
    memory_required_bytes_per_gpu: float
    memory_available_bytes_per_gpu: float
    price_usd_per_gpu_hour: float
    price_date: str
    efficiency_source_kind: str
    prediction: Prediction | None = None
    pp: int = 1
    ep: int = 1
    nodes_per_replica: int = 1
    ttft_band_low_s: float = math.nan  # 80% error band of ttft_s from the published corpus (`roofline.bands`); NaN: none
    ttft_band_high_s: float = math.nan
    tpot_band_low_s: float = math.nan
    tpot_band_high_s: float = math.nan
    price_note: str = ""  # '' when the price is on hardware.PRICE_BASIS, else what it is (`HardwareProfile.price_note`)
    energy_per_output_token_j: float = math.nan  # the fleet's GPU board energy per output token (`roofline.energy`)
    kwh_per_million_output_tokens: float = math.nan


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


def _meets(p: Prediction, s: Scenario) -> tuple[bool, bool]:
    """(TTFT within its SLO, TPOT within its SLO); an unset SLO is always met."""
    return (s.ttft_slo_s is None or p.ttft_s <= s.ttft_slo_s, s.tpot_slo_s is None or p.tpot_s <= s.tpot_slo_s)


def _missed(ok: tuple[bool, bool]) -> str:
    return " and ".join(name for name, good in zip((TTFT_SLO, TPOT_SLO), ok) if not good)


def evaluate_option(model_id: str, hardware_id: str, scenario: Scenario) -> Option:
    """The operating point of one model on one hardware (see the module docstring for the steps)."""
    model, hw = load_model(model_id), scenario.hardware_profile(hardware_id)
    s = scenario
    dep = s.deployment()
    base = dict(model_id=model_id, model=model.name, hardware_id=hardware_id, hardware=hw.name,
                price_usd_per_gpu_hour=hw.price_usd_per_gpu_hour, price_date=hw.price_date, price_note=hw.price_note,
                efficiency_source_kind=hw.efficiency.source_kind)
    nan = math.nan
    empty = dict(output_tokens_per_s_per_replica=nan, replicas=nan, gpus=nan, usd_per_hour=nan,
                 usd_per_million_output_tokens=nan, usd_per_million_output_tokens_full_load=nan)

    def workload(b: int) -> Workload:
        return Workload(batch_size=b, prompt_tokens=s.prompt_tokens, output_tokens=s.output_tokens)

    try:
        p1 = predict_fitting(model, hw, workload(1), dep)
    except SpecError as exc:
        if exc.field != "activation_dtype":  # a scenario error, not a property of this hardware
            raise
        return Option(**base, **empty, feasible=False, binding_constraint=UNSUPPORTED, note=str(exc), tp=0, batch_size=0,
                      max_batch_size_fits=0, ttft_s=nan, tpot_s=nan, e2e_latency_s=nan,
                      memory_required_bytes_per_gpu=nan, memory_available_bytes_per_gpu=hw.memory_bytes)
    tp = p1.num_gpus
    at = dict(tp=tp, max_batch_size_fits=p1.max_batch_size, memory_available_bytes_per_gpu=p1.memory_available_bytes)
    if not p1.fits:
        return Option(**base, **empty, **at, feasible=False, binding_constraint=NO_FIT, batch_size=0,
                      note=f"at tp={tp}, batch 1: {p1.fit_message}; latencies are what-ifs",
                      ttft_s=p1.ttft_s, tpot_s=p1.tpot_s, e2e_latency_s=p1.e2e_latency_s,
                      memory_required_bytes_per_gpu=p1.memory_required_bytes, prediction=p1)
    ok1 = _meets(p1, s)
    raised = ""
    if not all(ok1):  # more GPUs per replica may bring batch 1 within the SLOs
        for more in (t for t in valid_tps(model, hw) if t > tp):
            q = predict(model, hw, workload(1), dep.model_copy(update={"tp": more}))
            if q.fits and all(_meets(q, s)):
                raised = f"tp raised from {tp} (the smallest that fits) to {more} to meet the {_missed(ok1)} at batch 1; "
                p1, tp, ok1 = q, more, (True, True)
                at = dict(tp=tp, max_batch_size_fits=p1.max_batch_size, memory_available_bytes_per_gpu=p1.memory_available_bytes)
                break
    if not all(ok1):
        return Option(**base, **empty, **at, feasible=False, binding_constraint=_missed(ok1), batch_size=1,
                      note=(f"batch 1 at tp={tp} misses the SLO (TTFT {fmt.seconds(p1.ttft_s)}, TPOT {fmt.seconds(p1.tpot_s)}), "
                            f"and so does every larger tp"),
                      ttft_s=p1.ttft_s, tpot_s=p1.tpot_s, e2e_latency_s=p1.e2e_latency_s,
                      memory_required_bytes_per_gpu=p1.memory_required_bytes, prediction=p1)

    dep_tp = dep.model_copy(update={"tp": tp})
    cache: dict[int, Prediction] = {1: p1}

    def probe(b: int) -> Prediction:
        if b not in cache:
            cache[b] = predict(model, hw, workload(b), dep_tp)
        return cache[b]

    def good(b: int) -> bool:
        p = probe(b)
        return p.fits and all(_meets(p, s))

    fit_limit = p1.max_batch_size  # exact: memory is affine in the batch (tests/test_properties.py)
    upper = fit_limit if s.max_batch_size is None else min(fit_limit, s.max_batch_size)
    lo, hi = 1, upper  # good(lo) holds; find the largest good b in [lo, hi]
    if not good(hi):
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if good(mid) else (lo, mid)
        b = lo
    else:
        b = hi
    p = probe(b)
    if b == upper:
        capped = s.max_batch_size is not None and s.max_batch_size < fit_limit
        binding = BATCH_CAP if capped else MEMORY
        note = (f"batch capped at {s.max_batch_size} (memory holds {fit_limit})" if capped
                else f"batch {b + 1} would not fit in memory at tp={tp}")
    else:
        nxt = probe(b + 1)
        binding = _missed(_meets(nxt, s))
        note = f"batch {b + 1}: TTFT {fmt.seconds(nxt.ttft_s)}, TPOT {fmt.seconds(nxt.tpot_s)}"
    # The sawtooth: tokens/s is not monotone in the batch. GEMM rows are padded to `gemm_tile_tokens` and a
    # weight-only GEMM dequantizes its weights once per `dequant_tile_tokens` rows, so one sequence past a
    # multiple of a tile pays a whole extra tile (llama-2-13b int4 on a B200: 64 -> 65 sequences, -16% tokens/s).
    # Batches just past a step are dominated by the multiple below it (faster and more tokens/s): take that one.
    best, step = b, None
    for tile in sorted({hw.gemm_tile_tokens, dep.dequant_tile_tokens}, reverse=True):
        c = b // tile * tile
        if 1 <= c < best and probe(c).output_tokens_per_s > probe(best).output_tokens_per_s:
            best, step = c, tile
    if step is not None:
        note += (f"; batch {best} (a multiple of the {step}-row tile) serves more tokens/s than {b}, which is past a tile "
                 f"step: {fmt.count(probe(best).output_tokens_per_s)} vs {fmt.count(probe(b).output_tokens_per_s)}")
        b, p = best, probe(best)
    note = raised + note
    tokens_per_s = p.output_tokens_per_s
    replicas = math.ceil(s.output_tokens_per_s_demanded / tokens_per_s)
    gpus = replicas * tp
    usd_per_hour = gpus * hw.price_usd_per_gpu_hour
    usd_per_million = usd_per_million_tokens(usd_per_hour, s.output_tokens_per_s_demanded)
    j_token = fleet_energy_per_output_token_j(replicas, tp, hw.idle_power_w, p.mean_power_w_per_gpu, tokens_per_s,
                                              s.output_tokens_per_s_demanded)
    return Option(**base, **at, feasible=True, binding_constraint=binding, note=note, batch_size=b,
                  energy_per_output_token_j=j_token, kwh_per_million_output_tokens=float(kwh_per_million(j_token)),
                  output_tokens_per_s_per_replica=tokens_per_s, replicas=replicas, gpus=gpus, usd_per_hour=usd_per_hour,
                  usd_per_million_output_tokens=usd_per_million,
                  usd_per_million_output_tokens_full_load=p.cost_per_million_output_tokens_usd,
                  ttft_s=p.ttft_s, tpot_s=p.tpot_s, e2e_latency_s=p.e2e_latency_s,
                  memory_required_bytes_per_gpu=p.memory_required_bytes, prediction=p, **_bands_of(p))


def _bands_of(p: Prediction) -> dict:
    """The Option fields of a static-batch Prediction's TTFT and TPOT bands (NaN where it has none)."""
    out = {}
    for key, name in (("ttft_s", "ttft"), ("tpot_s", "tpot")):
        b = p.bands.get(key)
        out[f"{name}_band_low_s"], out[f"{name}_band_high_s"] = (b.low, b.high) if b else (math.nan, math.nan)
    return out


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
    "tp", "pp", "ep", "nodes_per_replica", "batch_size", "max_batch_size_fits", "output_tokens_per_s_per_replica", "replicas", "gpus",
    "usd_per_hour", "usd_per_million_output_tokens", "usd_per_million_output_tokens_full_load",
    "energy_per_output_token_j", "kwh_per_million_output_tokens",
    "ttft_s", "tpot_s", "e2e_latency_s", "ttft_band_low_s", "ttft_band_high_s", "tpot_band_low_s", "tpot_band_high_s",
    "memory_required_bytes_per_gpu", "memory_available_bytes_per_gpu",
    "price_usd_per_gpu_hour", "price_date", "price_note", "efficiency_source_kind", "note",
]


def rank_options(options: list[Option]) -> pd.DataFrame:
    """One row per option: feasible ones by fleet $/million output tokens (then full-load $/M, then GPUs),
    ranked 1..k; infeasible ones after them with no rank."""
    import pandas as pd

    rows = [{k: getattr(o, k) for k in COLUMNS if k != "rank"} for o in options]
    df = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "rank"])
    return ranked(df, ["usd_per_million_output_tokens", "usd_per_million_output_tokens_full_load", "gpus"], [True, True, True])


def evaluate_scenario(scenario: Scenario, progress: bool = True, stream: IO[str] | None = None) -> pd.DataFrame:
    """Evaluate every (model, hardware) pair of the scenario and rank them (see `rank_options`)."""
    for m in scenario.models:  # number formats no device can run together: one error naming the field, not "unsupported" everywhere
        scenario.deployment().resolved(load_model(m))
    if scenario.serving == "continuous":
        bar = Progress(len(scenario.models), progress, stream)
        options = []
        for m in scenario.models:
            options += planned_options(m, scenario)
            bar.step(m)
        return rank_options(options)
    pairs = [(m, h) for m in scenario.models for h in scenario.hardware]
    bar = Progress(len(pairs), progress, stream)
    options = []
    for m, h in pairs:
        options.append(evaluate_option(m, h, scenario))
        bar.step(h if len(scenario.models) == 1 else f"{m} on {h}")
    return rank_options(options)


def planned_options(model_id: str, scenario: Scenario) -> list[Option]:
    """`serving: continuous`: one Option per hardware from `roofline.plan` (its cheapest feasible fleet, or
    the option closest to feasible with its reason). Figures are the steady state at the offered load:
    TTFT at the scenario's percentile, mean TPOT, e2e = mean TTFT + TPOT x (output - 1); 'at full load'
    is one replica at its largest stable rate: gpus_per_replica x price / (capacity x output x 3600) x 1e6."""
    s = scenario
    model = load_model(model_id)
    profiles = {h: s.hardware_profile(h) for h in s.hardware}  # prices and calibration applied
    df = plan(model, s.requests_per_s, s.prompt_tokens, s.output_tokens, s.ttft_slo_s or NO_SLO_S, s.tpot_slo_s or NO_SLO_S,
              hardware=list(profiles.values()), ttft_percentile=s.ttft_percentile, max_batch_size=s.max_batch_size,
              chunk_tokens=s.chunk_tokens, precisions={"scenario": s.deployment()})
    ids = {hw.name: h for h, hw in profiles.items()}  # profiles passed as objects come back by name
    df["hardware_id"] = df["hardware"].map(ids)
    out = []
    for r in df.itertuples(index=False):
        hw = profiles[r.hardware_id]
        nan = math.nan
        shape = fmt.replica(r.tp, r.pp, r.ep, r.nodes_per_replica)
        if r.feasible:
            full = usd_per_million_tokens(r.gpus_per_replica * hw.price_usd_per_gpu_hour,
                                          r.capacity_requests_per_s_per_replica * s.output_tokens_mean)
            note = (f"{shape}; mean batch {r.batch_size:.1f} of {int(r.batch_limit)} that fit; prefill busy "
                    f"{r.prefill_utilization:.0%}; p{100 * s.ttft_percentile:g} TTFT {fmt.seconds(r.ttft_at_slo_percentile_s)}")
            figures = dict(batch_size=r.batch_size, max_batch_size_fits=int(r.batch_limit),
                           output_tokens_per_s_per_replica=r.output_tokens_per_s_per_replica, replicas=int(r.replicas),
                           gpus=int(r.gpus), usd_per_hour=r.usd_per_hour, usd_per_million_output_tokens=r.usd_per_million_output_tokens,
                           usd_per_million_output_tokens_full_load=full, ttft_s=r.ttft_at_slo_percentile_s, tpot_s=r.tpot_s,
                           e2e_latency_s=r.ttft_mean_s + r.tpot_s * (s.output_tokens_mean - 1),
                           ttft_band_low_s=r.ttft_at_slo_percentile_band_low_s, ttft_band_high_s=r.ttft_at_slo_percentile_band_high_s,
                           tpot_band_low_s=r.tpot_band_low_s, tpot_band_high_s=r.tpot_band_high_s,
                           energy_per_output_token_j=r.energy_per_output_token_j,
                           kwh_per_million_output_tokens=r.kwh_per_million_output_tokens)
        else:
            note = f"{shape}: {r.reason}" if r.tp else r.reason
            figures = dict(batch_size=0, max_batch_size_fits=0, output_tokens_per_s_per_replica=nan, replicas=nan, gpus=nan,
                           usd_per_hour=nan, usd_per_million_output_tokens=nan, usd_per_million_output_tokens_full_load=nan,
                           ttft_s=nan, tpot_s=nan, e2e_latency_s=nan)
        out.append(Option(
            model_id=model_id, model=model.name, hardware_id=r.hardware_id, hardware=hw.name, feasible=bool(r.feasible),
            binding_constraint=r.binding_constraint, note=note, tp=int(r.tp) if r.tp else 0,
            pp=int(r.pp) if r.tp else 1, ep=int(r.ep) if r.tp else 1,
            nodes_per_replica=int(r.nodes_per_replica) if r.tp else 1,
            memory_required_bytes_per_gpu=r.memory_required_bytes_per_gpu, memory_available_bytes_per_gpu=hw.memory_bytes,
            price_usd_per_gpu_hour=hw.price_usd_per_gpu_hour, price_date=hw.price_date, price_note=hw.price_note,
            efficiency_source_kind=hw.efficiency.source_kind, **figures))
    return out


# ------------------------------------------------------------ assumptions
