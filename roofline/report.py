"""The procurement report: which accelerator serves a given traffic within its latency SLOs, and at what cost.

A `Scenario` (YAML) names the models, the candidate hardware, the traffic (requests/s, prompt and
output tokens per request), the SLOs and the number formats. For every (model, hardware) pair,
`evaluate_option` finds one operating point, using only `predict` and `predict_fitting`:

1. **GPUs per replica** (tp): the smallest tensor-parallel degree whose memory holds the model at
   batch 1 (`predict_fitting`). None fits: "does not fit even at the largest tp". When batch 1
   misses an SLO at that tp, the next larger valid tp that meets both at batch 1 is taken instead
   (and the note says so); none does: the option is infeasible, bound by that SLO.
2. **Batch size**: the largest static batch b <= min(max batch that fits at that tp, the scenario's
   cap) whose TTFT <= ttft_slo_s and mean TPOT <= tpot_slo_s. Both latencies grow with the batch,
   so the search is a bisection over b, each probe one `predict` call.
3. **Binding constraint**: what stops b + 1. "memory" (b + 1 does not fit), "batch cap",
   "TTFT SLO" or "TPOT SLO" (b + 1 misses it). Batch 1 already missing an SLO makes the option
   infeasible, with that SLO as its binding constraint.
4. **Fleet**: output tokens/s of one replica = b * output / e2e latency (`Prediction.output_tokens_per_s`);
   replicas = ceil(requests_per_s * output_tokens / that); GPUs = replicas * tp;
   $/hour = GPUs * price per GPU-hour. $/million output tokens is that fleet's cost per hour over
   the output tokens it is asked for per hour (the idle headroom of the last replica included);
   `Prediction.cost_per_million_output_tokens_usd` (one replica at full load) is kept beside it.
5. **Rank**: feasible options by fleet $/million output tokens; infeasible ones after them, unranked.

Steps 1-5 are the **static-batch** model (`serving: static`): each replica runs batches of b
requests from prefill to the last token, and a request's TTFT is the prefill of its whole batch.

The default, `serving: continuous`, answers with the capacity planner instead (`roofline.plan`, the
same call as `roofline plan`): continuous batching in steady state with Poisson arrivals, TTFT at
`ttft_percentile` (an M/G/1 prefill queue), mean TPOT, and every replica shape (tp x pp, ep for MoE,
across nodes when one is not enough) in the scenario's number formats; per hardware the cheapest
fleet that meets the SLOs. `batch_size` is then the mean decode batch (Little's law) and
`max_batch_size_fits` the most memory holds. An unset SLO is no constraint (`NO_SLO_S`).

`write_report` writes report.html (self-contained: inline CSS and SVG, no scripts, no external
resources), report.md and report.csv (SI units in column names), each atomically, and states its
assumptions inside: efficiency fractions and their source kind, prices and their dates, the runtime
memory reserve, the simulator version, and the scenario itself as YAML.
"""

from __future__ import annotations

import datetime as _dt
import html
import math
import re
import sys
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import IO, Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import fmt
from .dtypes import get_dtype
from .errors import SpecError, validation_message
from .files import read_mapping, write_atomic
from .predict import Prediction, predict, predict_fitting, valid_tps
from .plan import plan
from .registry import list_hardware, load_hardware, load_model, read_yaml
from .units import GIB, SECONDS_PER_HOUR
from .specs import MAX_CONTEXT
from .workload import MAX_BATCH, Deployment, Workload

NO_SLO_S = 1e9  # seconds: an unset SLO, passed to the planner as a limit no option reaches

DEFAULT_SCENARIO = "scenarios/default.yaml"  # package data, relative to the roofline package

# the binding constraints, in words
MEMORY = "memory"
BATCH_CAP = "batch cap"
TTFT_SLO = "TTFT SLO"
TPOT_SLO = "TPOT SLO"
NO_FIT = "memory: does not fit even at the largest tp"
UNSUPPORTED = "unsupported"
NO_SLO = "none (no SLO set)"


# ------------------------------------------------------------ the scenario
class Scenario(BaseModel):
    """What is to be served and under which limits. Seconds, tokens, requests per second."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    title: str = Field("LLM serving procurement report", min_length=1)
    models: list[str] = Field(min_length=1, max_length=64, description="model ids (`roofline models`) or paths to spec YAML files")
    hardware: list[str] = Field(default_factory=list_hardware, min_length=1, max_length=256,
                                description="hardware ids (`roofline hardware`) or profile YAML paths; default: every shipped profile")
    requests_per_s: float = Field(gt=0, le=1e9, description="arriving requests per second, all replicas together")
    prompt_tokens: int = Field(ge=1, le=MAX_CONTEXT, description="input tokens per request")
    output_tokens: int = Field(ge=1, le=MAX_CONTEXT, description="generated tokens per request")
    ttft_slo_s: float | None = Field(None, gt=0, lt=NO_SLO_S, description="time to first token limit (continuous: at ttft_percentile, "
                                                             "queueing included; static: prefill of the whole batch)")
    tpot_slo_s: float | None = Field(None, gt=0, lt=NO_SLO_S, description="mean time per output token limit")
    weight_dtype: str | None = Field(None, description="weight storage format (default: the model's native)")
    activation_dtype: str | None = Field(None, description="compute format (default: native)")
    kv_dtype: str | None = Field(None, description="KV-cache format (default: native)")
    max_batch_size: int | None = Field(None, ge=1, le=MAX_BATCH, description="cap on the batch per replica (e.g. the serving engine's max_num_seqs)")
    serving: Literal["continuous", "static"] = Field(
        "continuous", description="continuous: the capacity planner (continuous batching, queueing, tp x pp x ep); "
                                  "static: whole batches from prefill to the last token, tp only")
    ttft_percentile: float = Field(0.9, gt=0, lt=1, description="continuous serving: the TTFT percentile the SLO applies to")

    @field_validator("weight_dtype", "activation_dtype", "kv_dtype")
    @classmethod
    def _known_dtype(cls, value: str | None, info):
        if value is not None:
            try:
                get_dtype(value, info.field_name)
            except SpecError as exc:
                raise ValueError(str(exc).split(": ", 1)[1]) from None
        return value

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Scenario":
        """Load a scenario file; any problem is a one-line `SpecError` naming the file and the field."""
        return cls.from_mapping(read_mapping(path, "yaml", field="scenario"), str(path))

    @classmethod
    def from_mapping(cls, data: dict, where: str = "scenario") -> "Scenario":
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise validation_message(exc, where, cls) from None

    @classmethod
    def default(cls) -> "Scenario":
        """The shipped default scenario (`roofline/scenarios/default.yaml`)."""
        res = resources.files("roofline").joinpath(DEFAULT_SCENARIO)
        return cls.from_mapping(read_yaml(res.read_text(), "default.yaml"), "default.yaml")

    def with_overrides(self, where: str = "arguments", **overrides) -> "Scenario":
        """A copy with the given fields replaced (None values are ignored), validated again."""
        update = {k: v for k, v in overrides.items() if v is not None}
        return type(self).from_mapping({**self.model_dump(), **update}, where)

    def deployment(self) -> Deployment:
        return Deployment(weight_dtype=self.weight_dtype, activation_dtype=self.activation_dtype, kv_dtype=self.kv_dtype)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(), sort_keys=False, allow_unicode=True)

    @property
    def output_tokens_per_s_demanded(self) -> float:
        """Output tokens per second the fleet must produce: requests/s x output tokens per request."""
        return self.requests_per_s * self.output_tokens


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


def _meets(p: Prediction, s: Scenario) -> tuple[bool, bool]:
    """(TTFT within its SLO, TPOT within its SLO); an unset SLO is always met."""
    return (s.ttft_slo_s is None or p.ttft_s <= s.ttft_slo_s, s.tpot_slo_s is None or p.tpot_s <= s.tpot_slo_s)


def _missed(ok: tuple[bool, bool]) -> str:
    return " and ".join(name for name, good in zip((TTFT_SLO, TPOT_SLO), ok) if not good)


def evaluate_option(model_id: str, hardware_id: str, scenario: Scenario) -> Option:
    """The operating point of one model on one hardware (see the module docstring for the steps)."""
    model, hw = load_model(model_id), load_hardware(hardware_id)
    s = scenario
    dep = s.deployment()
    base = dict(model_id=model_id, model=model.name, hardware_id=hardware_id, hardware=hw.name,
                price_usd_per_gpu_hour=hw.price_usd_per_gpu_hour, price_date=hw.price_date,
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
    # multiple of a tile pays a whole extra tile (llama-2-13b int4 on a B200: 64 -> 65 sequences, -11% tokens/s).
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
    usd_per_million = usd_per_hour / (s.output_tokens_per_s_demanded * SECONDS_PER_HOUR) * 1e6
    return Option(**base, **at, feasible=True, binding_constraint=binding, note=note, batch_size=b,
                  output_tokens_per_s_per_replica=tokens_per_s, replicas=replicas, gpus=gpus, usd_per_hour=usd_per_hour,
                  usd_per_million_output_tokens=usd_per_million,
                  usd_per_million_output_tokens_full_load=p.cost_per_million_output_tokens_usd,
                  ttft_s=p.ttft_s, tpot_s=p.tpot_s, e2e_latency_s=p.e2e_latency_s,
                  memory_required_bytes_per_gpu=p.memory_required_bytes, prediction=p)


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
    "ttft_s", "tpot_s", "e2e_latency_s", "memory_required_bytes_per_gpu", "memory_available_bytes_per_gpu",
    "price_usd_per_gpu_hour", "price_date", "efficiency_source_kind", "note",
]


def rank_options(options: list[Option]) -> pd.DataFrame:
    """One row per option: feasible ones by fleet $/million output tokens (then full-load $/M, then GPUs),
    ranked 1..k; infeasible ones after them with no rank."""
    rows = [{k: getattr(o, k) for k in COLUMNS if k != "rank"} for o in options]
    df = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "rank"])
    df = df.sort_values(["feasible", "usd_per_million_output_tokens", "usd_per_million_output_tokens_full_load", "gpus"],
                        ascending=[False, True, True, True], na_position="last", kind="stable").reset_index(drop=True)
    rank = pd.array([i + 1 if f else pd.NA for i, f in enumerate(df["feasible"])], dtype="Int64")
    df.insert(0, "rank", rank)
    return df


def compare(scenario: Scenario, progress: bool = True, stream: IO[str] | None = None) -> pd.DataFrame:
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
    df = plan(model, s.requests_per_s, s.prompt_tokens, s.output_tokens, s.ttft_slo_s or NO_SLO_S, s.tpot_slo_s or NO_SLO_S,
              hardware=s.hardware, ttft_percentile=s.ttft_percentile, max_batch_size=s.max_batch_size,
              precisions={"scenario": s.deployment()})
    out = []
    for r in df.itertuples(index=False):
        hw = load_hardware(r.hardware_id)
        nan = math.nan
        shape = fmt.replica(r.tp, r.pp, r.ep, r.nodes_per_replica)
        if r.feasible:
            full = r.gpus_per_replica * hw.price_usd_per_gpu_hour / (r.capacity_requests_per_s_per_replica * s.output_tokens
                                                                     * SECONDS_PER_HOUR) * 1e6
            note = (f"{shape}; mean batch {r.batch_size:.1f} of {int(r.batch_limit)} that fit; prefill busy "
                    f"{r.prefill_utilization:.0%}; p{100 * s.ttft_percentile:g} TTFT {fmt.seconds(r.ttft_at_slo_percentile_s)}")
            figures = dict(batch_size=r.batch_size, max_batch_size_fits=int(r.batch_limit),
                           output_tokens_per_s_per_replica=r.output_tokens_per_s_per_replica, replicas=int(r.replicas),
                           gpus=int(r.gpus), usd_per_hour=r.usd_per_hour, usd_per_million_output_tokens=r.usd_per_million_output_tokens,
                           usd_per_million_output_tokens_full_load=full, ttft_s=r.ttft_at_slo_percentile_s, tpot_s=r.tpot_s,
                           e2e_latency_s=r.ttft_mean_s + r.tpot_s * (s.output_tokens - 1))
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
            price_usd_per_gpu_hour=hw.price_usd_per_gpu_hour, price_date=hw.price_date,
            efficiency_source_kind=hw.efficiency.source_kind, **figures))
    return out


# ------------------------------------------------------------ assumptions
def simulator_version() -> str:
    """The installed package version, else the checkout's pyproject version, plus the git commit when in a checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        version = metadata.version("roofline")
    except metadata.PackageNotFoundError:
        version = "unknown"
        pyproject = root / "pyproject.toml"
        if pyproject.is_file():
            found = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.M)
            version = found.group(1) if found else version
    commit = _git_commit(root / ".git")
    return f"roofline {version}" + (f", commit {commit}" if commit else "")


def _git_commit(git: Path) -> str | None:
    """The checked-out commit, read from .git without running git; None outside a checkout."""
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:12]
        ref = head[5:]
        loose = git / ref
        if loose.is_file():
            return loose.read_text().strip()[:12]
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0][:12]
    except OSError:
        return None
    return None


def assumptions(scenario: Scenario, table: pd.DataFrame) -> dict:
    """Everything the numbers rest on, as text and small tables (formatted for people)."""
    reserve = Deployment.model_fields["runtime_reserve_bytes"]
    if scenario.serving == "continuous":
        q = f"p{100 * scenario.ttft_percentile:g}"
        general = [
            "Continuous batching in steady state (the capacity planner, `roofline plan`): requests arrive as a Poisson "
            "stream, join the running batch every engine step, and wait for the prefill server in an M/G/1 queue. "
            f"TTFT is the {q} (queueing + the prefill itself); TPOT is the mean decode step, stretched by the prefill "
            "passes mixed in; batch is the mean decode batch by Little's law.",
            "Replica shapes searched: tp inside the NVLink domain times 1-16 pipeline stages, and expert parallelism for "
            "MoE models, up to 64 GPUs; a replica wider than a node crosses the scale-out network (ib-ndr-400).",
            "Each hardware shows its cheapest fleet that meets both SLOs; the binding constraint is what caps the rate one "
            "replica may take ('capacity': memory, the batch cap or the prefill server).",
            f"Replicas = ceil(requests/s / the largest rate one replica serves within the SLOs); demand here is "
            f"{fmt.count(scenario.output_tokens_per_s_demanded)} output tokens/s. GPUs = replicas x tp x pp x ep; "
            "$/hour = GPUs x price per GPU-hour.",
            "$/M output tokens is the fleet's $/hour over the output tokens asked of it per hour (idle headroom included); "
            "'at full load' is one replica at its largest stable rate.",
        ]
    else:
        general = [
            "Static batching: each replica runs batches of `batch_size` requests from prefill to the last output token; "
            "a request's TTFT is the prefill of its whole batch and TPOT is the mean decode step. No queueing and no "
            "continuous batching (set `serving: continuous` for those).",
            "GPUs per replica (tp) is the smallest tensor-parallel degree that holds the model at batch 1 (raised to the "
            "smallest that meets the SLOs at batch 1 where needed), within one scale-up domain; no pipeline or expert parallelism.",
            "Batch size is the largest that fits in memory, stays within the batch cap, and meets both SLOs; "
            "the binding constraint is what stops one more request per batch.",
            f"Replicas = ceil(requests/s x output tokens / output tokens/s of one replica); demand here is "
            f"{fmt.count(scenario.output_tokens_per_s_demanded)} output tokens/s. GPUs = replicas x tp; $/hour = GPUs x price per GPU-hour.",
            "$/M output tokens is the fleet's $/hour over the output tokens asked of it per hour (the last replica's idle "
            "headroom included); 'at full load' is one replica kept busy (Prediction.cost_per_million_output_tokens_usd).",
        ]
    general += [
        f"Runtime memory reserve per GPU: {fmt.gigabytes(reserve.default)} = {reserve.default / GIB:g} GiB ({reserve.description}).",
        "Peaks are datasheet figures (dense); realistic times multiply them by the efficiency fractions below. "
        "'default' fractions come from public measurements, not yet calibrated on a real GPU; 'calibrated' ones were measured.",
        "Prices are approximate on-demand cloud prices per GPU-hour, dated below; reserved or marketplace rates differ.",
        f"Precision: weights {scenario.weight_dtype or 'native'}, compute {scenario.activation_dtype or 'native'}, "
        f"KV cache {scenario.kv_dtype or 'native'}; flash attention.",
        f"Simulator: {simulator_version()}.",
    ]
    hw_rows = []
    for hid in dict.fromkeys(table["hardware_id"]):
        hw = load_hardware(hid)
        e = hw.efficiency
        flops = ", ".join(f"{k} {fmt.fraction(v)}" for k, v in e.flops_fraction.items() if k in ("bf16", "fp16", "fp8", "int8", "fp4"))
        hw_rows.append([hid, hw.name, f"{fmt.usd(hw.price_usd_per_gpu_hour)}/GPU-hour", hw.price_date,
                        fmt.fraction(e.memory_bandwidth_fraction), flops, fmt.fraction(e.attention_flops_fraction),
                        fmt.fraction(e.interconnect_bandwidth_fraction), fmt.seconds(e.kernel_overhead_s), e.source_kind,
                        hw.sources.get("price_usd_per_gpu_hour", "")])
    hw_header = ["id", "hardware", "price", "price date", "HBM BW fraction", "GEMM FLOP/s fractions",
                 "attention fraction", "all-reduce fraction", "kernel overhead", "fractions", "price source"]
    return {"general": general, "hw_header": hw_header, "hw_rows": hw_rows, "scenario_yaml": scenario.to_yaml()}


# ------------------------------------------------------------ formatting
def _money(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.usd(x)


def _int(x) -> str:
    return "n/a" if x is None or pd.isna(x) else fmt.count(x)


def _display_rows(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    header = ["rank", "model", "hardware", "replica (tp/pp/ep)", "batch", "tokens/s/replica", "replicas", "GPUs",
              "$/hour", "$/M output tokens", "$/M at full load", "TTFT", "TPOT", "binding constraint"]
    rows = []
    for r in table.itertuples(index=False):
        rows.append([
            "-" if pd.isna(r.rank) else str(int(r.rank)), r.model, r.hardware_id, _shape_text(r),
            _batch_text(r.batch_size) if r.feasible else "-", _int(r.output_tokens_per_s_per_replica), _int(r.replicas), _int(r.gpus),
            _money(r.usd_per_hour), _money(r.usd_per_million_output_tokens), _money(r.usd_per_million_output_tokens_full_load),
            fmt.seconds(r.ttft_s), fmt.seconds(r.tpot_s), r.binding_constraint,
        ])
    return header, rows


def _shape_text(r) -> str:
    """The replica shape of a report row (`fmt.replica`)."""
    return fmt.replica(r.tp, r.pp, r.ep, r.nodes_per_replica)


def _batch_text(b) -> str:
    """A static batch is a whole number; a continuous-batching mean batch keeps one decimal."""
    return _int(b) if float(b).is_integer() else f"{b:.1f}"


def _slo_text(s: Scenario) -> str:
    ttft = fmt.seconds(s.ttft_slo_s) if s.ttft_slo_s else "none"
    if s.ttft_slo_s and s.serving == "continuous":
        ttft = f"p{100 * s.ttft_percentile:g} {ttft}"
    tpot = fmt.seconds(s.tpot_slo_s) if s.tpot_slo_s else "none"
    cap = fmt.count(s.max_batch_size) if s.max_batch_size else "none"
    model = ("continuous batching with queueing (the capacity planner)" if s.serving == "continuous"
             else "static batches")
    return f"TTFT SLO {ttft}, TPOT SLO {tpot}, batch cap {cap}; serving model: {model}"


def _traffic_text(s: Scenario) -> str:
    return (f"{s.requests_per_s:g} requests/s, each {fmt.count(s.prompt_tokens)} prompt + "
            f"{fmt.count(s.output_tokens)} output tokens")


def top_option_text(table: pd.DataFrame) -> str:
    """One line naming the best-ranked option, or saying that none is feasible."""
    best = table[table["rank"] == 1]
    if best.empty:
        return "no option meets the scenario: " + "; ".join(
            f"{r.hardware_id}: {r.binding_constraint}" for r in table.itertuples(index=False))
    r = best.iloc[0]
    return (f"{r['model']} on {r['hardware_id']}: {fmt.quantity(r['gpus'], 'GPU')} ({fmt.quantity(r['replicas'], 'replica')} x {_shape_text(best.iloc[0])}, "
            f"batch {_batch_text(r['batch_size'])}), {_money(r['usd_per_hour'])}/hour, {_money(r['usd_per_million_output_tokens'])} "
            f"per million output tokens; bound by {r['binding_constraint']}")


def render_markdown(scenario: Scenario, table: pd.DataFrame) -> str:
    a = assumptions(scenario, table)
    header, rows = _display_rows(table)

    def md(h, rs):
        cells = lambda r: "| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |"  # noqa: E731
        return "\n".join([cells(h), "| " + " | ".join("---" for _ in h) + " |", *(cells(r) for r in rs)])

    notes = [f"- **{r.model} on {r.hardware_id}**: {r.binding_constraint}; {r.note}" for r in table.itertuples(index=False)]
    parts = [
        f"# {scenario.title}", "",
        f"Traffic: {_traffic_text(scenario)}. {_slo_text(scenario)}.", "",
        f"**Top option**: {top_option_text(table)}.", "",
        "## Options", "", md(header, rows), "",
        "Unranked rows (`-`) do not fit, miss an SLO even at batch 1 or lack the number format; they are never ranked.", "",
        "## Binding constraints", "", *notes, "",
        "## Assumptions", "", *(f"- {g}" for g in a["general"]), "",
        "### Hardware: efficiency fractions and prices", "", md(a["hw_header"], a["hw_rows"]), "",
        "### Scenario", "", "```yaml", a["scenario_yaml"].rstrip(), "```", "",
    ]
    return "\n".join(parts)


def _bar_chart_svg(title: str, labels: list[str], values: list[float], texts: list[str], color: str) -> str:
    """A horizontal bar chart as inline SVG; NaN values get no bar and their text (e.g. 'n/a')."""
    row_h, label_w, bar_w, text_w, top = 22, 260, 360, 150, 28
    width = label_w + bar_w + text_w
    height = top + row_h * len(labels) + 8
    finite = [v for v in values if not math.isnan(v)]
    vmax = max(finite) if finite and max(finite) > 0 else 1.0
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           f'role="img" aria-label="{html.escape(title)}">',
           f'<text x="0" y="16" font-size="14" font-weight="bold">{html.escape(title)}</text>']
    for i, (label, v, t) in enumerate(zip(labels, values, texts)):
        y = top + i * row_h
        out.append(f'<text x="{label_w - 8}" y="{y + 15}" font-size="12" text-anchor="end">{html.escape(label)}</text>')
        w = 0.0 if math.isnan(v) else bar_w * v / vmax
        if w > 0:
            out.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{color}"/>')
        out.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" font-size="12">{html.escape(t)}</text>')
    out.append("</svg>")
    return "\n".join(out)


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em; color: #222; max-width: 1400px; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f0f0f0; } td.l, th.l { text-align: left; }
tr.infeasible td { color: #888; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; }
.charts svg { display: block; margin: 1em 0; }
"""


def render_html(scenario: Scenario, table: pd.DataFrame) -> str:
    a = assumptions(scenario, table)
    header, rows = _display_rows(table)
    e = html.escape
    left = {1, 2, 13}

    def html_table(h, rs, left_cols, classes=None):
        head = "".join(f'<th class="l">{e(c)}</th>' if i in left_cols else f"<th>{e(c)}</th>" for i, c in enumerate(h))
        body = []
        for k, r in enumerate(rs):
            cls = f' class="{classes[k]}"' if classes else ""
            body.append(f"<tr{cls}>" + "".join(f'<td class="l">{e(str(c))}</td>' if i in left_cols else f"<td>{e(str(c))}</td>"
                                               for i, c in enumerate(r)) + "</tr>")
        return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"

    classes = ["feasible" if f else "infeasible" for f in table["feasible"]]
    multi = table["model_id"].nunique() > 1
    labels = [f"{r.model} / {r.hardware_id}" if multi else r.hardware_id for r in table.itertuples(index=False)]
    cost = [float(x) for x in table["usd_per_million_output_tokens"]]
    gpus = [float(x) for x in table["gpus"]]
    charts = [
        _bar_chart_svg("$ per million output tokens (fleet at the demanded load)", labels, cost,
                       [_money(x) if not math.isnan(x) else f"n/a ({b})" for x, b in zip(cost, table["binding_constraint"])], "#3b6ea8"),
        _bar_chart_svg("GPUs needed", labels, gpus, [_int(x) for x in gpus], "#c26a2e"),
    ]
    notes = "".join(f"<li><b>{e(r.model)} on {e(r.hardware_id)}</b>: {e(r.binding_constraint)}; {e(r.note)}</li>"
                    for r in table.itertuples(index=False))
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(scenario.title)}</title>", f"<style>{_CSS}</style></head><body>",
        f"<h1>{e(scenario.title)}</h1>",
        f"<p>Traffic: {e(_traffic_text(scenario))}. {e(_slo_text(scenario))}.</p>",
        f"<p><b>Top option</b>: {e(top_option_text(table))}.</p>",
        "<h2>Options</h2>", html_table(header, rows, left, classes),
        "<p>Unranked rows (-) do not fit, miss an SLO even at batch 1 or lack the number format; they are never ranked.</p>",
        '<div class="charts">', *charts, "</div>",
        "<h2>Binding constraints</h2>", f"<ul>{notes}</ul>",
        "<h2>Assumptions</h2>", "<ul>" + "".join(f"<li>{e(g)}</li>" for g in a["general"]) + "</ul>",
        "<h3>Hardware: efficiency fractions and prices</h3>", html_table(a["hw_header"], a["hw_rows"], {0, 1, 5, 10}),
        "<h3>Scenario</h3>", f"<pre>{e(a['scenario_yaml'])}</pre>",
        f"<p><small>Generated {e(_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'))} by {e(simulator_version())}.</small></p>",
        "</body></html>", "",
    ])


def render_csv(table: pd.DataFrame) -> str:
    return table.to_csv(index=False, float_format="%.10g")


# ------------------------------------------------------------ writing
@dataclass(frozen=True)
class WrittenReport:
    html: Path
    markdown: Path
    csv: Path
    table: pd.DataFrame


def write_report(scenario: Scenario, out_dir: str | Path, progress: bool = True, stream: IO[str] | None = None) -> WrittenReport:
    """Evaluate the scenario and write report.html, report.md and report.csv into `out_dir` (created if needed)."""
    out = Path(out_dir)
    for m in scenario.models:  # unknown ids fail before anything is created
        load_model(m)
    for h in scenario.hardware:
        load_hardware(h)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SpecError("out", f"cannot create {str(out)!r}: {exc.strerror or exc}") from None
    table = compare(scenario, progress=progress, stream=stream)
    paths = WrittenReport(out / "report.html", out / "report.md", out / "report.csv", table)
    write_atomic(paths.html, render_html(scenario, table))
    write_atomic(paths.markdown, render_markdown(scenario, table))
    write_atomic(paths.csv, render_csv(table))
    return paths


__all__ = ["Scenario", "Option", "evaluate_option", "rank_options", "compare", "write_report", "WrittenReport",
           "render_html", "render_markdown", "render_csv", "top_option_text", "simulator_version"]
