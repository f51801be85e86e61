"""Argument parsing and dispatch for `roofline calibrate` and `roofline validate`.

roofline/cli.py builds its parser with `add_calibrate_arguments` / `add_validate_arguments` and
prints `run(args)`. This module imports no torch: `run` imports it, and a missing torch is a
one-line SpecError naming the fix, which roofline/cli.py prints with exit status 2.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from roofline.errors import SpecError

CALIBRATE_DESCRIPTION = (
    "Microbenchmark this device (HBM bandwidth curve, GEMMs per dtype over model shapes, prefill and decode "
    "attention, launch overhead with and without CUDA graphs, NCCL all-reduce on >1 GPU) and fit the curves "
    "into a calibrated profile (calibration.json) for `load_hardware(ID, calibration=PATH)`. Finished "
    "benchmarks are kept per file and reused on a re-run (--resume, the default) unless --overwrite.")
VALIDATE_DESCRIPTION = (
    "Build decoder-only transformers from model specs with random weights on the device (the reference engine "
    "`fast`, eager Hugging Face transformers `hf`, the eager own Llama `own`), run prefill and decode with a static KV cache, measure "
    "TTFT, TPOT and throughput, and report the error of the datasheet and calibrated predictions "
    "(validation.csv, validation.md, predicted-vs-measured SVGs).")


def _ints(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(not 1 <= v <= 1 << 24 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if not 1 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError(f"must be from 1 to 1,000,000, got {text}")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None, help="results folder (default: calibrate/results/<device-slug>/)")
    p.add_argument("--profile", default=None,
                   help="hardware profile id to compare against (default: the detected match; required on a CPU "
                        "or an unmatched GPU to get a calibrated profile, else only measurements are written)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: the CPU/test mode (same code paths, seconds)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", dest="overwrite", action="store_false", default=False,
                   help="skip finished results whose environment matches (default)")
    g.add_argument("--overwrite", dest="overwrite", action="store_true", help="redo every measurement")


def add_calibrate_arguments(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--only", default=None, help="comma-separated benchmark names (bandwidth_copy, gemm_bf16, ...; default: every one)")
    g = p.add_argument_group("public kernel tables (no GPU, no torch; pip install roofline[public-data])")
    g.add_argument("--from-public", default=None, metavar="DEVICE",
                   help="fit a calibrated profile from the measured kernel tables aiconfigurator-core ships, for DEVICE "
                        "(a100_sxm, h100_sxm, h200_sxm, b200_sxm, gb200, l40s, or our ids a100-sxm-80gb, h100-sxm, ...); "
                        "writes calibrate/public/<id>.json, or --out PATH (a .json file or a folder); default: none, "
                        "microbenchmark the GPU of this machine")
    g.add_argument("--framework", default=None, help="with --from-public: vllm, trtllm or sglang tables (default: the "
                                                      "newest vLLM where present, else TensorRT-LLM)")
    g.add_argument("--version", default=None, help="with --from-public: the framework version of the tables (default: newest)")


def add_validate_arguments(p: argparse.ArgumentParser) -> None:
    _common(p)
    g = p.add_argument_group("published corpus (no GPU, no torch)")
    g.add_argument("--published", action="store_true",
                   help="run every row of the published end-to-end corpus (calibrate/published/e2e/*.csv) through the "
                        "predictor and print the error per family; --out DIR also writes accuracy.md, predictions.csv "
                        "and scatter.svg there")
    g.add_argument("--source", default=None, help="with --published: only these sources (comma separated; default: every source)")
    g.add_argument("--gpu", default=None, help="with --published: only these GPUs (hardware ids, comma separated; default: every GPU)")
    g.add_argument("--family", default=None, help="with --published: only these families (ttft_static, tpot_static, "
                                                   "e2e_static, throughput_static, ttft_serving, tpot_serving, e2e_serving, "
                                                   "throughput_serving, throughput_offline; default: every family)")
    g.add_argument("--update", action="store_true",
                   help="with --published on the whole corpus: rewrite the committed report "
                        "(calibrate/published/report/), the accuracy-gate baseline and roofline's error bands")
    p.add_argument("--model", default=None, help="model spec ids or paths, comma separated (default: llama-3.1-8b; "
                                                 "with --quick: tiny-llama, a 2-layer 64-wide test spec)")
    p.add_argument("--calibration", default=None, help="calibration.json from `roofline calibrate` (adds calibrated predictions; default: none)")
    p.add_argument("--batch-sizes", type=_ints, default=None, help="comma separated (default 1,8,32; --quick 1,2)")
    p.add_argument("--prompt-tokens", type=_ints, default=None, help="comma separated (default 512,2048; --quick 16,32)")
    p.add_argument("--output-tokens", type=_ints, default=None, help="comma separated (default 128; --quick 8)")
    p.add_argument("--impl", default="fast,hf",
                   help="comma separated: fast (the reference engine: static cache, GQA without copies, flash prefill, "
                        "decode from CUDA graphs), hf (eager HF transformers), own (eager own Llama); default fast,hf")
    p.add_argument("--precision", default=None,
                   help="comma separated: bf16, fp8 (W8A8 _scaled_mm), int8 (weight-only); hf and own run bf16 only "
                        "(default bf16 on a GPU, fp32 on a CPU)")
    p.add_argument("--time-budget-s", "--time-budget", dest="time_budget", type=float, default=None, metavar="SECONDS",
                   help="seconds (--time-budget is the older spelling): skip (and note) points whose estimated time no longer fits (default: no limit)")
    p.add_argument("--layers", type=_positive, default=None,
                   help="truncate each spec to N layers so it fits one GPU; predictions use the same truncated spec "
                        "(default: every layer)")
    p.add_argument("--reps", type=_positive, default=None, help="timed generations per point (default 3; --quick 1)")


def _command_of(args: argparse.Namespace) -> str:
    parts = [args.command]
    for key, value in sorted(vars(args).items()):
        if key in ("command",) or value in (None, False):
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        else:
            parts += [flag, ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    return "roofline " + " ".join(shlex.quote(p) for p in parts)


def run(args: argparse.Namespace) -> str:
    """Run the subcommand; returns the text to print. Errors are one-line SpecErrors."""
    if getattr(args, "published", False):
        return run_published(args)
    if getattr(args, "from_public", None):
        from .public import run_from_public

        mixed = [flag for flag, on in (("--profile", args.profile), ("--quick", args.quick), ("--only", args.only),
                                       ("--overwrite", args.overwrite)) if on]
        if mixed:
            raise SpecError("--from-public", f"fits the published tables and takes no {', '.join(mixed)} "
                                             "(those are for a run on this GPU); pass --framework/--version/--out only")

        return run_from_public(args.from_public, args.framework, args.version, args.out)
    if getattr(args, "framework", None) or getattr(args, "version", None):
        raise SpecError("--framework/--version", "apply to --from-public DEVICE only")
    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise SpecError("--out", f"{args.out!r} is a file; give a folder (created if needed) for the results")
    try:
        import torch  # noqa: F401
    except ImportError:
        raise SpecError("torch", "is not installed; pip install roofline[calibrate] (or pip install torch)") from None
    command = _command_of(args)
    if args.command == "calibrate":
        from .runner import run_calibration

        only = [x.strip() for x in args.only.split(",")] if args.only else None
        return run_calibration(out=args.out, profile=args.profile, quick=args.quick, overwrite=args.overwrite,
                               command=command, only=only).summary()
    from .validate import run_validation

    q = args.quick
    models = [m.strip() for m in (args.model or ("tiny-llama" if q else "llama-3.1-8b")).split(",") if m.strip()]
    impls = [i.strip() for i in args.impl.split(",") if i.strip()]
    return run_validation(
        models, impls, args.batch_sizes or ([1, 2] if q else [1, 8, 32]), args.prompt_tokens or ([16, 32] if q else [512, 2048]),
        args.output_tokens or ([8] if q else [128]), out=args.out, calibration=args.calibration, profile=args.profile,
        layers=args.layers, reps=args.reps or (1 if q else 3), overwrite=args.overwrite, command=command,
        precisions=[x.strip() for x in args.precision.split(",") if x.strip()] if args.precision else None,
        deadline_s=None if args.time_budget is None else time.monotonic() + args.time_budget,
    ).summary()


def run_published(args: argparse.Namespace) -> str:
    """`roofline validate --published`: the corpus through the public API, the family table, the accuracy gate.

    The gate (whole corpus only) compares the family table with calibrate/published/baseline.json and fails
    with a one-line error when a family's median |error| worsened by more than 1 point or its p90 by more
    than 3 (`corpus.gate`). `--update` rewrites the baseline, the report and the error bands instead.
    """
    import json
    from datetime import date
    from pathlib import Path

    from . import corpus
    from roofline.report import simulator_version

    df, table, seconds = corpus.run(args.source, args.gpu, args.family)
    text = corpus.summary_text(table, df, seconds)
    whole = not (args.source or args.gpu or args.family)
    command = "roofline validate --published" + "".join(
        f" --{k} {shlex.quote(v)}" for k, v in (("source", args.source), ("gpu", args.gpu), ("family", args.family)) if v)
    stamp = f"{simulator_version()}, {date.today().isoformat()}."
    if args.update:
        if not whole:
            raise SpecError("--update", "rewrites the committed baseline and bands: run it on the whole corpus (no --source/--gpu/--family)")
        corpus.write_report(df, corpus.REPORT_DIR, command, stamp)
        corpus.BASELINE_PATH.write_text(json.dumps(corpus.baseline_of(table, df), indent=1, sort_keys=True) + "\n", encoding="utf-8")
        bands_path = Path(__file__).resolve().parent.parent / "roofline" / "error_bands.json"
        corpus.write_bands(df, bands_path)
        return text + f"\nupdated {corpus.REPORT_DIR}, {corpus.BASELINE_PATH.name} and {bands_path}"
    if args.out:
        paths = corpus.write_report(df, Path(args.out), command, stamp)
        text += "\nwrote " + ", ".join(str(p) for p in paths)
    if whole and corpus.BASELINE_PATH.is_file():
        failures = corpus.gate(table, json.loads(corpus.BASELINE_PATH.read_text(encoding="utf-8")))
        if failures:
            print(text)
            raise SpecError("accuracy gate", "; ".join(failures) + " (a change that improves the figures updates the "
                                             "baseline with --update in the same commit)")
        text += "\naccuracy gate vs calibrate/published/baseline.json: pass"
    return text
