"""`roofline` command line: predict, report, models, hardware. Parses, calls the library, formats.

Every error the library can detect (unknown id, impossible value, a dtype the
hardware lacks) is printed as one line `roofline: error: FIELD: what and the fix`
with exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from pydantic import ValidationError

from . import fmt
from .errors import SpecError
from .predict import Prediction, predict, predict_fitting
from .registry import list_hardware, list_models, load_hardware, load_model, validation_message
from .workload import Deployment, Workload


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _tp(text: str):
    return "auto" if text == "auto" else _positive_int(text)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="roofline", description="LLM-inference roofline and cost model.")
    sub = p.add_subparsers(dest="command", required=True)

    pr = sub.add_parser("predict", help="TTFT, TPOT, throughput, memory and cost of one scenario on one or more devices")
    pr.add_argument("--model", required=True, help="model id (see `roofline models`) or a spec .yaml path; several comma-separated")
    pr.add_argument("--hardware", required=True, help="hardware id (see `roofline hardware`) or a profile .yaml path; several comma-separated")
    pr.add_argument("--batch-size", type=_positive_int, default=1)
    pr.add_argument("--prompt-tokens", type=_positive_int, default=1024)
    pr.add_argument("--output-tokens", type=_positive_int, default=256)
    pr.add_argument("--tp", type=_tp, default=1, help="tensor-parallel GPUs, or 'auto' for the fewest that fit")
    pr.add_argument("--weight-dtype", help="weight storage format (default: the model's native dtype)")
    pr.add_argument("--activation-dtype", help="compute format (default: native)")
    pr.add_argument("--kv-dtype", help="KV-cache format (default: native)")
    pr.add_argument("--weight-group-size", type=_positive_int, help="elements per quantization scale")
    pr.add_argument("--attention", choices=["flash", "naive"], default="flash", help="attention kernel IO model")
    pr.add_argument("--operators", action="store_true", help="also print the per-operator table")
    pr.add_argument("--json", action="store_true", help="print the full predictions as JSON")

    rp = sub.add_parser("report", help="procurement report: GPUs, $/hour and $/M tokens per hardware for a traffic and its SLOs",
                        description="Writes report.html, report.md and report.csv. Flags override the scenario file; "
                                    "with neither, the shipped default scenario (Llama-3.1-70B, 10 requests/s).")
    rp.add_argument("--scenario", help="scenario .yaml (fields: see roofline.report.Scenario); default: the shipped default")
    rp.add_argument("--model", help="model ids or spec paths, comma-separated")
    rp.add_argument("--hardware", help="hardware ids or profile paths, comma-separated; 'all' for every shipped profile")
    # values are validated by the Scenario model, so a bad one is a one-line error naming the field
    for flag, help_ in (("--requests-per-s", "arriving requests per second"), ("--prompt-tokens", "input tokens per request"),
                        ("--output-tokens", "output tokens per request"), ("--ttft-slo-s", "time-to-first-token limit, seconds"),
                        ("--tpot-slo-s", "mean time-per-output-token limit, seconds"),
                        ("--max-batch-size", "cap on the batch per replica (max_num_seqs)"),
                        ("--serving", "continuous (default: the capacity planner) or static (whole batches, tp only)"),
                        ("--ttft-percentile", "continuous serving: the TTFT percentile the SLO applies to (default 0.9)"),
                        ("--weight-dtype", "weight storage format"), ("--activation-dtype", "compute format"),
                        ("--kv-dtype", "KV-cache format")):
        rp.add_argument(flag, help=help_)
    rp.add_argument("--out", default="roofline-report", help="output folder (created if needed; default: ./roofline-report)")
    rp.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    # calibration and validation live in the top-level `calibrate` package (issue 4); its cli module must
    # import without torch so that `roofline --help` works on a machine without it.
    from calibrate import cli as calibrate_cli

    calibrate_cli.add_calibrate_arguments(sub.add_parser(
        "calibrate", help="microbenchmark this GPU and write a calibrated hardware profile",
        description=calibrate_cli.CALIBRATE_DESCRIPTION))
    calibrate_cli.add_validate_arguments(sub.add_parser(
        "validate", help="run real transformer inference and measure the error of every prediction",
        description=calibrate_cli.VALIDATE_DESCRIPTION))

    from .plan import PLAN_DESCRIPTION, add_plan_arguments

    add_plan_arguments(sub.add_parser("plan", help="capacity planner: cheapest deployment per hardware for a traffic and its SLOs",
                                      description=PLAN_DESCRIPTION))

    from .compare import COMPARE_DESCRIPTION, add_compare_arguments

    add_compare_arguments(sub.add_parser("compare", help="what-if: a baseline and technique variants side by side, with deltas",
                                         description=COMPARE_DESCRIPTION))

    sub.add_parser("models", help="list the shipped model specs").add_argument("--json", action="store_true")
    sub.add_parser("hardware", help="list the shipped hardware profiles").add_argument("--json", action="store_true")
    return p


def _split(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _predictions(a: argparse.Namespace) -> list[Prediction]:
    models = [load_model(m) for m in _split(a.model)]
    hws = [load_hardware(h) for h in _split(a.hardware)]
    try:
        wl = Workload(batch_size=a.batch_size, prompt_tokens=a.prompt_tokens, output_tokens=a.output_tokens)
        dep = Deployment(
            tp=1 if a.tp == "auto" else a.tp, weight_dtype=a.weight_dtype, activation_dtype=a.activation_dtype,
            kv_dtype=a.kv_dtype, weight_group_size=a.weight_group_size, attention_impl=a.attention,
        )
    except ValidationError as exc:
        raise validation_message(exc, "arguments") from None
    run = predict_fitting if a.tp == "auto" else predict
    return [run(m, hw, wl, dep) for m in models for hw in hws]


def _report(preds: list[Prediction]) -> str:
    p0 = preds[0]
    wl, dep = p0.workload, p0.deployment
    title = (f"batch {wl.batch_size} x (prompt {wl.prompt_tokens} + output {wl.output_tokens} tokens); "
             f"weights {dep.weight_dtype or 'native'}, compute {dep.activation_dtype or 'native'}, KV {dep.kv_dtype or 'native'}; "
             f"{dep.attention_impl} attention")
    per_hw = [fmt.headline_rows(p) for p in preds]
    rows = [[label, *(r[i][1] for r in per_hw)] for i, (label, _) in enumerate(per_hw[0])]
    notes = [f"{p.hardware}: {p.model} {p.fit_message}" for p in preds if not p.fits]
    text = title + "\n\n" + fmt.table(["", *(p.hardware for p in preds)], rows)
    if notes:
        text += "\n\n" + "\n".join(notes) + "\n(latency and throughput above are what-ifs, as if the memory were there; try --tp auto or a smaller --weight-dtype)"
    return text


def _operators(p: Prediction) -> str:
    df = p.operators
    rows = [[f"{r.phase} {r.op}", r.layers_group, fmt.rate(r.flops, "FLOP"), fmt.gigabytes(r.hbm_bytes),
             fmt.seconds(r.time_s), fmt.seconds(r.floor_s), r.bound] for r in df.itertuples()]
    return f"\nOperators of {p.model} on {p.hardware} (decode rows: mean step):\n" + fmt.table(
        ["operator", "layers", "FLOPs", "HBM bytes", "time", "floor", "bound"], rows)


def _list_models(as_json: bool) -> str:
    ids = list_models()
    specs = [load_model(i) for i in ids]
    if as_json:
        return json.dumps([{"id": i, **s.model_dump(), "param_count": s.param_count, "active_param_count": s.active_param_count,
                            "kv_bytes_per_token_bf16": s.kv_bytes_per_token("bf16")} for i, s in zip(ids, specs)], indent=2)
    rows = [[i, f"{s.param_count / 1e9:,.1f}B", f"{s.active_param_count / 1e9:,.1f}B", s.attention,
             f"{s.kv_bytes_per_token('bf16') / 1e3:,.1f} kB", f"{s.max_context:,}"] for i, s in zip(ids, specs)]
    return fmt.table(["id", "params", "active", "attention", "KV/token (bf16)", "max context"], rows)


def _list_hardware(as_json: bool) -> str:
    ids = list_hardware()
    hws = [load_hardware(i) for i in ids]
    if as_json:
        return json.dumps([{"id": i, **h.model_dump()} for i, h in zip(ids, hws)], indent=2)
    rows = [[i, fmt.gigabytes(h.memory_bytes), fmt.rate(h.memory_bandwidth_bytes_per_s, "B/s"),
             fmt.rate(h.peak_flops_per_s["bf16"], "FLOP/s"), fmt.rate(h.peak_flops_per_s.get("fp8", 0), "FLOP/s") if "fp8" in h.peak_flops_per_s else "-",
             fmt.rate(h.interconnect.bytes_per_s_per_direction, "B/s"), f"{fmt.usd(h.price_usd_per_gpu_hour)} ({h.price_date})"] for i, h in zip(ids, hws)]
    return fmt.table(["id", "memory", "HBM bandwidth", "bf16 dense", "fp8 dense", "link/direction", "$/GPU-hour"], rows)


def _run_report(a: argparse.Namespace) -> str:
    from .report import Scenario, top_option_text, write_report

    scenario = Scenario.from_yaml(a.scenario) if a.scenario else Scenario.default()
    overrides = {k: getattr(a, k) for k in ("requests_per_s", "prompt_tokens", "output_tokens", "ttft_slo_s", "tpot_slo_s",
                                            "max_batch_size", "weight_dtype", "activation_dtype", "kv_dtype", "serving",
                                            "ttft_percentile")}
    if a.model is not None:
        overrides["models"] = _split(a.model)
    if a.hardware is not None:
        overrides["hardware"] = list_hardware() if a.hardware.strip() == "all" else _split(a.hardware)
    scenario = scenario.with_overrides("arguments", **overrides)
    written = write_report(scenario, a.out, progress=not a.no_progress)
    return (f"wrote {written.html}, {written.markdown} and {written.csv}\n"
            f"top option: {top_option_text(written.table)}")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    a = parser.parse_args(argv)
    try:
        if a.command == "models":
            print(_list_models(a.json))
        elif a.command == "hardware":
            print(_list_hardware(a.json))
        elif a.command == "report":
            print(_run_report(a))
        elif a.command == "plan":
            from .plan import run_plan

            print(run_plan(a))
        elif a.command == "compare":
            from .compare import run_compare

            print(run_compare(a))
        elif a.command in ("calibrate", "validate"):
            from calibrate import cli as calibrate_cli

            print(calibrate_cli.run(a))
        else:
            preds = _predictions(a)
            if a.json:
                docs = [{**p.model_dump(mode="json"), "operators": p.operators.to_dict(orient="records")} for p in preds]
                print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2))
            else:
                print(_report(preds))
                if a.operators:
                    for p in preds:
                        print(_operators(p))
    except SpecError as exc:
        print(f"roofline: error: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"roofline: error: {validation_message(exc, 'input')}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
