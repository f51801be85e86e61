"""`roofline report`: the procurement report (report.html, report.md, report.csv) for a scenario."""

from __future__ import annotations

from ..hardware import parse_prices
from ..registry import list_hardware
from ..report import Scenario, top_option_text, write_report
from . import args

HELP = "procurement report: GPUs, $/hour and $/M tokens per hardware for a traffic and its SLOs"
DESCRIPTION = ("Writes report.html, report.md and report.csv. Flags override the scenario file; "
               "with neither, the shipped default scenario (Llama-3.1-70B, 10 requests/s).")

# flags whose values the Scenario model validates, so a bad one is a one-line error naming the field
SCENARIO_FLAGS = (
    ("--title", "the report's title (default: the scenario's; made from the models and traffic when flags change them)"),
    ("--requests-per-s", "arriving requests per second (Poisson); default: the scenario's"),
    ("--concurrency", "continuous serving: clients in a closed loop instead of a rate (vllm bench serve --max-concurrency); "
                      "default: the scenario's"),
    ("--prompt-tokens", "input tokens per request: N, or a distribution such as lognormal:2048:0.5 (continuous serving); "
                       "default: the scenario's"),
    ("--output-tokens", "output tokens per request: N, or a distribution such as uniform:128:384 (continuous serving); "
                       "default: the scenario's"),
    ("--ttft-slo-s", "time-to-first-token limit, seconds (default: the scenario's; none there: no limit)"),
    ("--tpot-slo-s", "mean time-per-output-token limit, seconds (default: the scenario's; none there: no limit)"),
    ("--max-batch-size", "cap on the batch per replica (max_num_seqs; default: the scenario's, else the engine's own cap "
                         "and what memory holds)"),
    ("--serving", "continuous (default: the capacity planner) or static (whole batches, tp only)"),
    ("--ttft-percentile", "continuous serving: the TTFT percentile the SLO applies to (default 0.9)"),
    ("--weight-dtype", "weight storage format (default: the scenario's, else the model's native dtype)"),
    ("--activation-dtype", "compute format (default: the scenario's, else native)"),
    ("--kv-dtype", "KV-cache format (default: the scenario's, else native)"),
    ("--chunk-tokens", "continuous serving: chunked prefill, prefill tokens per engine step (default: the scenario's, else "
                       "the engine's budget when it chunks prefill, else whole prompts)"),
    ("--calibration", "a calibration file (`roofline calibrate`) attached to every hardware (default: the scenario's, "
                      "else the calibration shipped for each device where one exists)"),
    ("--engine", args.ENGINE_HELP.replace("; default vllm)", "; default: the scenario's, else vllm)")),
    ("--attention-dp", "attention layouts to try on a MoE model's replicas of tp > 1: both, on (data-parallel over the tp "
                       "GPUs, MLP/MoE tensor-parallel, SGLang --enable-dp-attention) or off (tensor-parallel), as plan "
                       "--attention-dp (default: the scenario's, else both)"),
)

METAVARS = {"--calibration": "FILE", "--attention-dp": "{both,on,off}"}  # else argparse's (the flag in capitals)


def add_arguments(p) -> None:
    p.add_argument("--scenario", metavar="FILE.yaml", help="scenario .yaml (fields: see roofline.report.Scenario); default: the shipped default")
    p.add_argument("--model", help="model ids, spec .yaml paths or Hugging Face config.json paths, comma-separated "
                                      "(default: the scenario's)")
    p.add_argument("--hardware", help="hardware ids or profile paths, comma-separated; 'all' for every shipped profile "
                                         "(default: the scenario's)")
    for flag, help_ in SCENARIO_FLAGS:
        p.add_argument(flag, help=help_, metavar=METAVARS.get(flag))
    args.add_price_argument(p)
    args.add_analytical_argument(p)
    p.add_argument("--out", metavar="DIR", default="roofline-report", help="output folder (created if needed; default: ./roofline-report)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def run(a) -> str:
    scenario = Scenario.from_yaml(a.scenario) if a.scenario else Scenario.default()
    overrides = {flag[2:].replace("-", "_"): None for flag, _ in SCENARIO_FLAGS}
    overrides = {k: getattr(a, k) for k in overrides}
    if a.model is not None:
        overrides["models"] = args.ids(a.model, "models")
    if a.hardware is not None:
        overrides["hardware"] = list_hardware() if a.hardware.strip() == "all" else args.ids(a.hardware, "hardware")
    if a.price:
        overrides["prices"] = {**scenario.prices, **parse_prices(a.price)}
    if a.analytical:
        overrides["analytical"] = True
    scenario = scenario.with_overrides("", **overrides)
    written = write_report(scenario, a.out, progress=not a.no_progress)
    return (f"wrote {written.html}, {written.markdown} and {written.csv}\n"
            f"top option: {top_option_text(written.table)}")
