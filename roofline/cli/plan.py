"""`roofline plan`: the capacity planner's cheapest deployment per hardware (`roofline.plan`), as a table or JSON."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

from .. import fmt
from ..errors import SpecError
from ..plan import ATTENTION_LAYOUTS, MAX_GPUS_PER_REPLICA, PRECISIONS, plan
from ..registry import list_hardware

if TYPE_CHECKING:
    import pandas as pd

from . import args

PLAN_ATTENTION_DP = ATTENTION_LAYOUTS  # --attention-dp -> SearchSpace.attention_dp (the names a report scenario takes too)
HELP = "capacity planner: cheapest deployment per hardware for a traffic and its SLOs"
DESCRIPTION = (
    "For each hardware profile, the cheapest deployment (precision, tp, replicas) that serves the traffic under "
    "continuous batching within the SLOs: TTFT at a percentile (M/G/1 prefill queue) and mean TPOT. "
    "Lengths take a distribution: N | fixed:N | uniform:LOW:HIGH | normal:MEAN:STD | lognormal:MEDIAN:SIGMA | "
    "empirical:T1=P1,T2=P2,...")


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="model id (see `roofline models`), a spec .yaml path or a Hugging Face config.json path")
    load = p.add_mutually_exclusive_group(required=True)
    load.add_argument("--requests-per-s", help="arriving requests per second (Poisson), whole fleet")
    load.add_argument("--concurrency", help="clients in a closed loop, whole fleet: each sends its next request when its last one "
                                            "finished (vllm bench serve --max-concurrency, genai-perf, AIPerf)")
    p.add_argument("--prompt-tokens", required=True, help="prompt length: N or a distribution, e.g. lognormal:2048:0.5")
    p.add_argument("--output-tokens", required=True, help="output length: N or a distribution, e.g. uniform:128:384")
    p.add_argument("--ttft-slo-s", required=True, help="time-to-first-token limit at --ttft-percentile, seconds")
    p.add_argument("--tpot-slo-s", required=True, help="mean time-per-output-token limit, seconds")
    p.add_argument("--ttft-percentile", default="0.9", help="percentile the TTFT SLO applies to (default 0.9)")
    p.add_argument("--hardware", default="all", help="hardware ids or profile paths, comma-separated; 'all' (default)")
    p.add_argument("--chunk-tokens", help="chunked prefill: prefill tokens per engine step (default: the engine's budget when "
                                          "it chunks prefill, else whole prompts)")
    p.add_argument("--max-batch-size", help="engine cap on running sequences per replica (vLLM max_num_seqs; "
                   "default: the engine's own cap, and what memory holds)")
    p.add_argument("--precision", help=f"precisions to try, comma-separated: {', '.join(PRECISIONS)} (default: all; "
                                       "each only where the device computes in it)")
    args.add_calibration_argument(p)
    args.add_price_argument(p)
    p.add_argument("--tp", help="tensor-parallel degrees to try, comma-separated (default: every valid one inside a node)")
    p.add_argument("--pp", help="pipeline stages to try, comma-separated (default: 1,2,4,8,16)")
    p.add_argument("--attention-dp", choices=tuple(PLAN_ATTENTION_DP), default="both",
                   help="attention layouts to try on a MoE model's tp > 1 replicas: both (default), on (data-parallel over "
                        "the tp GPUs, MLP/MoE tensor-parallel, SGLang --enable-dp-attention) or off (tensor-parallel)")
    p.add_argument("--ep", help="expert-parallel degrees to try for a MoE model, comma-separated (default: powers of two dividing the experts)")
    p.add_argument("--max-gpus-per-replica", default=str(MAX_GPUS_PER_REPLICA), help=f"largest replica, tp x pp x ep GPUs (default {MAX_GPUS_PER_REPLICA})")
    p.add_argument("--engine", help=args.ENGINE_HELP)
    p.add_argument("--network", help="scale-out network for replicas wider than one node (`roofline networks`; default ib-ndr-400)")
    p.add_argument("--serving", default="continuous", help="continuous (default: continuous batching in steady state, queueing) "
                                                          "or static (whole batches from prefill to the last token; fixed lengths)")
    p.add_argument("--all-options", action="store_true", help="every (hardware, precision, tp, pp, ep) option, not only the best per hardware")
    p.add_argument("--top", help="print only the first N rows (default: every row)")
    p.add_argument("--json", action="store_true",
                   help='print one JSON object: {"inputs": {...}, "rows": [one object per option, SI units, USD]}')


def run(a) -> str:
    """Convert the flags, call `plan`, format the table (or JSON)."""
    ids = list_hardware() if a.hardware.strip() == "all" else args.ids(a.hardware, "hardware")
    if ids == []:
        raise SpecError("hardware", "needs at least one hardware id; see `roofline hardware`")
    hardware = args.hardware_profiles(ids, a)
    precisions = None
    if a.precision is not None:
        names = args.split(a.precision)
        bad = [n for n in names if n not in PRECISIONS]
        if bad or not names:
            raise SpecError("precision", f"unknown precision {bad[0] if bad else a.precision!r}; choose from {', '.join(PRECISIONS)}")
        precisions = {n: PRECISIONS[n] for n in names}
    top = args.number(a.top, "top", int)
    rate = None if a.requests_per_s is None else args.number(a.requests_per_s, "requests_per_s")
    df = plan(a.model, rate, args.length(a.prompt_tokens, "prompt_tokens"),
              args.length(a.output_tokens, "output_tokens"), args.number(a.ttft_slo_s, "ttft_slo_s"),
              args.number(a.tpot_slo_s, "tpot_slo_s"), hardware=hardware,
              ttft_percentile=args.number(a.ttft_percentile, "ttft_percentile"),
              chunk_tokens=args.number(a.chunk_tokens, "chunk_tokens", int),
              max_batch_size=args.number(a.max_batch_size, "max_batch_size", int), best_only=not a.all_options, precisions=precisions,
              tps=args.integers(a.tp, "tps"), pps=args.integers(a.pp, "pps"), eps=args.integers(a.ep, "eps"),
              attention_dp=PLAN_ATTENTION_DP[a.attention_dp],
              max_gpus_per_replica=args.number(a.max_gpus_per_replica, "max_gpus_per_replica", int), network=a.network, serving=a.serving,
              concurrency=None if a.concurrency is None else args.number(a.concurrency, "concurrency"), engine=args.engine(a.engine))
    by_name = {hw.name: h for h, hw in zip(ids, hardware)}  # profiles passed as objects come back by name
    df["hardware_id"] = df["hardware"].map(by_name).fillna(df["hardware_id"])
    if top is not None:
        df = df.head(top)
    if a.json:
        return json.dumps({"inputs": df.attrs, "rows": json_records(df)}, indent=2)
    return plan_table(df)


def json_records(df: pd.DataFrame) -> list[dict]:
    """The planner's rows as plain JSON values (NaN and NA as null)."""
    import pandas as pd

    return [{k: (None if (isinstance(v, float) and math.isnan(v)) or v is pd.NA else v.item() if hasattr(v, "item") else v)
             for k, v in r.items()} for r in df.to_dict(orient="records")]


def _prefill(attrs) -> str:
    """How prompts are prefilled: the chunk asked for, else the engine's default, else whole prompts."""
    if attrs.get("chunk_tokens"):
        return f"chunked prefill {attrs['chunk_tokens']} tokens/step"
    engine = attrs.get("engine")
    if engine is None:
        return "whole-prompt prefill (no engine)"
    return f"{engine} engine: its prefill budget and running-sequence cap (`roofline engines`)"


def plan_table(df: pd.DataFrame) -> str:
    """The planner's frame as a titled text table."""
    s = df.attrs
    static = s.get("serving") == "static"
    q = "batch" if static else f"p{100 * s['ttft_percentile']:g}"
    load = (f"{s['concurrency']:g} concurrent clients (closed loop)" if s.get("concurrency") is not None
            else f"{s['requests_per_s']:g} requests/s")
    title = (f"{s['model']}: {load}, prompt {s['prompt_tokens']}, output {s['output_tokens']} tokens; "
             f"SLOs: {q} TTFT <= {fmt.seconds(s['ttft_slo_s'])}, mean TPOT <= {fmt.seconds(s['tpot_slo_s'])}; "
             + ("static batches" if static else _prefill(s)))
    rows = []
    for r in df.itertuples():
        if r.feasible:
            hardware = f"{r.hardware_id} ({r.price_note})" if r.price_note else r.hardware_id
            rows.append([str(r.rank), hardware, r.precision, fmt.replica_of(r), str(r.replicas), str(r.gpus), f"{r.batch_size:.1f}",
                         fmt.seconds(r.ttft_at_slo_percentile_s), fmt.seconds(r.tpot_s), fmt.usd(r.usd_per_hour),
                         fmt.usd(r.usd_per_million_output_tokens), f"{r.kwh_per_million_output_tokens:.3g}", r.binding_constraint])
        else:
            rows.append(["-", r.hardware_id, r.precision, fmt.replica_of(r) if r.tp else "-", "-", "-", "-", "-", "-", "-", "-", "-",
                         f"infeasible: {r.reason}"])
    header = ["rank", "hardware", "precision", "replica", "replicas", "GPUs", "batch", f"TTFT {q}", "TPOT", "$/hour", "$/M out tok",
              "kWh/M out tok", "bound by"]
    return title + "\n\n" + fmt.table(header, rows) + _band_note(df, q)


def _band_note(df: pd.DataFrame, q: str) -> str:
    """The top option's 80% error bands (`roofline.bands`), under the table: where 80% of published runs fell."""
    top = df[df["feasible"]].head(1)
    if not len(top):
        return ""
    r = top.iloc[0]
    parts = [f"{label} {band}" for col, label in (("ttft_at_slo_percentile", f"TTFT {q}"), ("tpot", "TPOT"))
             if (band := fmt.span(r[f"{col}_band_low_s"], r[f"{col}_band_high_s"]))]
    if not parts:
        return ""
    runs = "static-batch" if df.attrs.get("serving") == "static" else "serving"
    return (f"\n\nrank 1, 80% error bands from published {runs} runs: {'; '.join(parts)} "
            "(calibrate/published/report/accuracy.md)")
