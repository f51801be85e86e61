"""Argument parsing and dispatch for `roofline calibrate` and `roofline validate`.

roofline/cli.py builds its parser with `add_calibrate_arguments` / `add_validate_arguments` and
prints `run(args)`. This module imports no torch: `run` imports it, and a missing torch is a
one-line SpecError naming the fix, which roofline/cli.py prints with exit status 2.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from roofline.errors import SpecError

CALIBRATE_DESCRIPTION = (
    "Microbenchmark this device (HBM bandwidth curve, GEMMs per dtype over model shapes, prefill and decode "
    "attention, launch overhead with and without CUDA graphs, NCCL all-reduce on >1 GPU) and fit the curves "
    "into a calibrated profile (calibration.json) for `load_hardware(ID, calibration=PATH)`. Finished "
    "benchmarks are kept per file and reused on a re-run (--resume, the default) unless --overwrite.")
VALIDATE_DESCRIPTION = (
    "Build decoder-only transformers from model specs with random weights (the project's own Llama "
    "implementation and/or Hugging Face transformers), run prefill and decode with a static KV cache, measure "
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
    p.add_argument("--only", default=None, help="comma-separated benchmark names (bandwidth_copy, gemm_bf16, ...)")


def add_validate_arguments(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--model", default=None, help="model spec ids or paths, comma separated (default: llama-3.1-8b; "
                                                 "with --quick: tiny-llama, a 2-layer 64-wide test spec)")
    p.add_argument("--calibration", default=None, help="calibration.json from `roofline calibrate` (adds calibrated predictions)")
    p.add_argument("--batch-sizes", type=_ints, default=None, help="comma separated (default 1,8,32; --quick 1,2)")
    p.add_argument("--prompt-tokens", type=_ints, default=None, help="comma separated (default 512,2048; --quick 16,32)")
    p.add_argument("--output-tokens", type=_ints, default=None, help="comma separated (default 128; --quick 8)")
    p.add_argument("--impl", default="own,hf", help="own, hf or own,hf (default both)")
    p.add_argument("--layers", type=_positive, default=None,
                   help="truncate each spec to N layers so it fits one GPU; predictions use the same truncated spec")
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
    ).summary()
