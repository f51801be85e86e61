"""The one way every subcommand reads its flags.

argparse only declares the flags (as text); each subcommand's `run` converts them with the functions
here, so a bad value is one line, `roofline: error: FIELD: what and the fix`, exit status 2, named by
the library's field (`batch_size`, `requests_per_s`) rather than by the flag.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from pydantic import ValidationError

from ..engines import DEFAULT_ENGINE, load_engine
from ..errors import SpecError, validation_message
from ..hardware import parse_prices
from ..registry import load_hardware
from ..workload import Workload


def split(text: str) -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c']."""
    return [x.strip() for x in text.split(",") if x.strip()]


def ids(text: str, field: str) -> list[str]:
    """Ids or paths, comma-separated; a path to an existing file is taken whole (it may hold a comma).
    None left after splitting is an error naming the field."""
    try:
        whole = Path(text.strip()).is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        whole = False
    if whole:
        return [text.strip()]
    out = split(text)
    if not out:
        listing = "hardware" if field == "hardware" else "models"
        raise SpecError(field, f"needs at least one id or file path, got {text!r}; see `roofline {listing}`")
    return out


def number(text: str | None, field: str, kind=float, positive: bool = True):
    """A flag's value as `kind` (None stays None), finite; `positive`: above zero (at least 1 for an integer)."""
    if text is None:
        return None
    try:
        value = kind(text)
    except ValueError:
        raise SpecError(field, f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    if (isinstance(value, float) and not math.isfinite(value)) or abs(value) > 1e30:
        raise SpecError(field, f"must be a finite number of sensible size, got {text if len(text) < 40 else text[:20] + '...'}")
    if positive and not value > 0:
        raise SpecError(field, f"must be at least 1, got {text}" if kind is int else f"must be positive, got {text}")
    return value


def integers(text: str | None, field: str) -> list[int] | None:
    """'1,2,4' -> [1, 2, 4], each a positive integer; None stays None; an empty list is an error."""
    if text is None:
        return None
    return [number(x, field, int) for x in split(text)] or number("", field, int)


def length(text: str, field: str):
    """A token length: an integer, or a distribution string left to `serving.as_length_dist`."""
    return number(text, field, int) if text.strip().lstrip("-").isdigit() else text


def add_workload_arguments(p: argparse.ArgumentParser, batch_size: str = "1", prompt_tokens: str = "1024",
                           output_tokens: str = "256") -> None:
    """--batch-size, --prompt-tokens, --output-tokens: a static `Workload` (predict, compare)."""
    p.add_argument("--batch-size", default=batch_size, help=f"sequences in the batch (default {batch_size})")
    p.add_argument("--prompt-tokens", default=prompt_tokens, help=f"input tokens per sequence (default {prompt_tokens})")
    p.add_argument("--output-tokens", default=output_tokens, help=f"generated tokens per sequence (default {output_tokens})")


def workload(a: argparse.Namespace) -> Workload:
    """The `Workload` of --batch-size, --prompt-tokens and --output-tokens, each a positive integer."""
    values = {f: number(getattr(a, f), f, int) for f in ("batch_size", "prompt_tokens", "output_tokens")}
    try:
        return Workload(**values)
    except ValidationError as exc:
        raise validation_message(exc, "") from None  # flags: the field alone


def add_calibration_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calibration", metavar="FILE",
                   help="a calibration file (`roofline calibrate`): its measured curves time every operator on the devices "
                        "given (a CalibrationMismatchWarning says when it was measured on another device); default: the calibration "
                        "shipped for each device where one exists (`--analytical` for none)")
    add_analytical_argument(p)


def add_analytical_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--analytical", action="store_true",
                   help="the pure datasheet model (peaks x sourced fractions) instead of the calibration shipped for a "
                        "device (its fit of public kernel tables, attached by default where one exists)")


def add_price_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--price", action="append", metavar="DEVICE=USD_PER_HOUR",
                   help="price per GPU-hour for a device, instead of its profile's (repeatable, or comma-separated; "
                        "default: each profile's own price)")


def hardware_profiles(ids: list[str], a: argparse.Namespace) -> list:
    """The profiles of `ids` with --calibration attached (or --analytical: the datasheet model) and --price applied (a price for a device not among
    `ids` is an error: it would silently change nothing)."""
    prices = parse_prices(getattr(a, "price", None) or [])
    unknown = sorted(set(prices) - set(ids))
    if unknown:
        raise SpecError("price", f"{', '.join(unknown)} is not among the hardware given ({', '.join(ids)})")
    calibration, analytical = getattr(a, "calibration", None), getattr(a, "analytical", False)
    hws = [load_hardware(h, calibration=calibration, analytical=analytical) for h in ids]
    return [hw.with_price(prices[h], "--price") if h in prices else hw for h, hw in zip(ids, hws)]


ENGINE_HELP = "serving engine profile (`roofline engines`: vllm, vllm-v0-mla, sglang, sglang-0.4.0, trtllm, trtllm-eager, trtllm-cpp, trtllm-cpp-0.5, trtllm-cpp-0.7, lmdeploy-turbomind; default vllm), or none for the bare roofline"


def engine(text: str | None) -> str | None:
    """--engine: an engine id, 'none' for the bare roofline, or unset for the default engine."""
    if text is None:
        return DEFAULT_ENGINE
    if text.strip().lower() == "none":
        return None
    load_engine(text.strip())  # an unknown id: one line listing the choices
    return text.strip()


def add_attention_dp_argument(p: argparse.ArgumentParser, tp_auto: bool = False) -> None:
    """--attention-dp (predict, serve); `tp_auto`: the subcommand also takes --tp auto, which then starts at tp 2."""
    needs = "--tp > 1 (or auto: the smallest above 1 that fits)" if tp_auto else "--tp > 1"
    p.add_argument("--attention-dp", action="store_true",
                   help="attention data-parallel over the tp GPUs, MLP/MoE tensor-parallel (SGLang --enable-dp-attention; "
                        f"needs {needs} and --ep 1; default: off, attention tensor-parallel)")
