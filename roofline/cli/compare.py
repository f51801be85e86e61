"""`roofline compare`: a baseline and technique variants side by side, with deltas (`roofline.compare`)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .. import fmt
from ..compare import compare, deployment_from_pairs, parse_pairs, parse_variant
from ..errors import SpecError
from ..registry import as_model, load_hardware
from ..workload import Deployment

if TYPE_CHECKING:
    import pandas as pd

from . import args

HELP = "what-if: a baseline and technique variants side by side, with deltas"
DESCRIPTION = (
    "Baseline vs named variants on one hardware and workload. Each --variant is NAME:KEY=VALUE[,KEY=VALUE...], where a "
    "KEY is a Deployment field (weight_dtype, activation_dtype, kv_dtype, weight_group_size, tp, pp, ep, attention_dp, sparsity, "
    "sparse_format, sparsity_fraction, kv_allocation, kv_block_tokens, prefix_tokens, prefix_hit_rate, "
    "weight_offload_fraction, kv_offload_fraction, attention_impl, on_unsupported_dtype, engine, ...; none for a field "
    "that may be unset: engine=none is the bare roofline), speculative.draft / "
    "speculative.k / speculative.acceptance_rate / speculative.draft_layers, model (a student or any other spec), "
    "tokens_per_text, or a spec transform: keep_layers, keep_heads, keep_ffn, keep_experts (prune), attention "
    "(mha|mqa|gqa|mla), kv_heads, sliding_window, cla, vocab. Unset keys take the baseline's values.")


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="baseline model id or spec path")
    p.add_argument("--hardware", required=True, help="hardware id or profile path")
    args.add_analytical_argument(p)
    args.add_workload_arguments(p)
    p.add_argument("--baseline", default="", help="the baseline's deployment as KEY=VALUE[,KEY=VALUE...] (default: native, tp=1)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...", help="a variant (repeatable; default: none, the baseline alone)")
    p.add_argument("--json", action="store_true", help="print the table as JSON records")


# (label, column, formatter) of the text table
_SHOWN = (("model", "model", str), ("GPUs", "gpus_per_replica", lambda x: f"{x:g}"), ("TTFT", "ttft_s", fmt.seconds),
          ("TPOT", "tpot_s", fmt.seconds), ("TPOT per baseline token of text", "text_tpot_s", fmt.seconds),
          ("tokens/s", "output_tokens_per_s", lambda x: f"{x:,.0f}"), ("decode bound", "decode_bound", str),
          ("weights / GPU", "weight_bytes", fmt.gigabytes), ("KV cache / GPU", "kv_cache_bytes", fmt.gigabytes),
          ("memory / GPU", "memory_required_bytes_per_gpu", fmt.gigabytes), ("fits", "fits", str),
          ("max batch", "max_batch_size_fits", lambda x: f"{x:,.0f}"),
          ("ridge point (FLOP/B)", "ridge_point_flops_per_byte", lambda x: f"{x:,.0f}"),
          ("$/M output tokens", "usd_per_million_output_tokens", fmt.usd), ("TPOT vs baseline", "tpot_s_vs_baseline", lambda x: f"{x:.2f}x"))


def format_table(df: pd.DataFrame) -> str:
    """`compare`'s frame as a text table, one column per variant, errors and notes below."""
    rows = []
    for label, col, f in _SHOWN:
        cells = []
        for name in df.index:
            v = df.at[name, col]
            cells.append("-" if (isinstance(v, float) and math.isnan(v)) else f(v))
        rows.append([label, *cells])
    text = fmt.table(["", *df.index], rows)
    extra = [f"{n}: {df.at[n, 'error']}" for n in df.index if df.at[n, "error"]]
    extra += [f"{n}: {df.at[n, 'notes']}" for n in df.index if df.at[n, "notes"]]
    return text + ("\n\n" + "\n".join(extra) if extra else "")


def run(a) -> str:
    base_model = as_model(a.model)
    base_dep = deployment_from_pairs(parse_pairs(a.baseline, "--baseline"), None, "--baseline") if a.baseline else Deployment()
    wl = args.workload(a)
    variants: dict = {}
    for text in a.variant:
        name, variant = parse_variant(text, base_model, base_dep)
        if not name:
            raise SpecError("--variant", f"needs a NAME before ':', got {text!r}")
        if name in variants:
            raise SpecError("--variant", f"name {name!r} is given twice; give each variant its own name")
        variants[name] = variant
    df = compare(base_model, load_hardware(a.hardware, analytical=a.analytical), wl, base_dep, variants)
    failed = [n for n in df.index if df.at[n, "error"]]
    if failed:  # the library keeps a failing variant as a row; on the command line it is an error
        field, _, msg = str(df.at[failed[0], "error"]).partition(": ")
        raise SpecError(f"--variant {failed[0]}: {field}", msg or field)
    if a.json:
        return df.reset_index().to_json(orient="records", indent=2)
    return (f"{df.attrs['hardware']}: batch {wl.batch_size} x (prompt {wl.prompt_tokens} + output {wl.output_tokens} tokens)\n\n"
            + format_table(df))
