"""`roofline models`: the shipped model specs."""

from __future__ import annotations

import json

from .. import fmt
from ..registry import list_models, load_model

HELP = "list the shipped model specs"
DESCRIPTION = None


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="every spec with its derived counts, as JSON")


def run(a) -> str:
    ids = list_models()
    specs = [load_model(i) for i in ids]
    if a.json:
        return json.dumps([{"id": i, **s.model_dump(), "param_count": s.param_count, "active_param_count": s.active_param_count,
                            "kv_bytes_per_token_bf16": s.kv_bytes_per_token("bf16")} for i, s in zip(ids, specs)], indent=2)
    rows = [[i, f"{s.param_count / 1e9:,.1f}B", f"{s.active_param_count / 1e9:,.1f}B", s.attention,
             f"{s.kv_bytes_per_token('bf16') / 1e3:,.1f} kB", f"{s.max_context:,}"] for i, s in zip(ids, specs)]
    return fmt.table(["id", "params", "active", "attention", "KV/token (bf16)", "max context"], rows)
