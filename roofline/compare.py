"""`compare`: a baseline and named variants side by side, every headline metric and its change.

A variant is a `Deployment` (same model: quantization, sparsity, parallelism, KV
management, speculative decoding, ...), a model (id, path or `ModelSpec`: a distilled
student, a pruned or re-attentioned spec from `roofline.techniques`), or a `Variant`
combining both with a tokenizer factor:

    tokens_per_text = tokens this variant's tokenizer needs for text the baseline's encodes in 1

A larger vocabulary that encodes the same text in 15% fewer tokens (Llama 3's 128K
vocabulary against Llama 2's 32K, per Meta's Llama 3 announcement) has tokens_per_text 0.85:
the variant's workload has 0.85x the prompt and output tokens, so it runs fewer decode
steps, while its bigger embedding and LM head cost more per step. `text_tpot_s` =
TPOT · tokens_per_text is the time per baseline token of text, the fair comparison.

Every variant goes through the same `predict` as the baseline. Deltas are ratios
(variant / baseline) for the metrics in `DELTA_METRICS`; a failing variant (a dtype the
hardware lacks, a bad combination) is a row with its error in `error`, not an exception.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import ValidationError

if TYPE_CHECKING:
    import pandas as pd

from . import techniques as T
from .errors import SpecError, validation_message
from .predict import Prediction, predict
from .registry import as_hardware, as_model
from .specs import ModelSpec
from .workload import Deployment, Workload

BASELINE = "baseline"
METRICS = (
    "ttft_s", "tpot_s", "text_tpot_s", "e2e_latency_s", "output_tokens_per_s", "output_tokens_per_s_per_gpu",
    "mbu_decode", "mfu_decode", "mfu_prefill", "prefill_bound", "decode_bound",
    "weight_bytes", "kv_cache_bytes", "kv_bytes_per_token", "memory_required_bytes_per_gpu", "memory_available_bytes_per_gpu", "fits",
    "max_batch_size_fits", "gpus_per_replica", "usd_per_hour", "usd_per_million_output_tokens",
    "peak_flops_per_s", "ridge_point_flops_per_byte",
)
DELTA_METRICS = ("ttft_s", "tpot_s", "text_tpot_s", "e2e_latency_s", "output_tokens_per_s", "weight_bytes",
                 "kv_cache_bytes", "memory_required_bytes_per_gpu", "max_batch_size_fits", "usd_per_million_output_tokens")


@dataclass(frozen=True)
class Variant:
    """One option: a model (None = the baseline's), a deployment (None = the baseline's) and a tokenizer factor."""

    model: str | ModelSpec | None = None
    deployment: Deployment | None = None
    tokens_per_text: float = 1.0

    def __post_init__(self):
        if not (isinstance(self.tokens_per_text, (int, float)) and 0 < self.tokens_per_text < math.inf):
            raise SpecError("tokens_per_text", f"must be a positive number of tokens per baseline token, got {self.tokens_per_text!r}")


def _as_variant(name: str, v) -> Variant:
    if isinstance(v, Variant):
        return v
    if isinstance(v, Deployment):
        return Variant(deployment=v)
    if isinstance(v, (str, ModelSpec)):
        return Variant(model=v)
    raise SpecError(f"variants[{name!r}]", f"must be a Deployment, a model id / ModelSpec or a Variant, got {type(v).__name__}")


def _scaled(wl: Workload, f: float) -> Workload:
    if f == 1:
        return wl
    return wl.model_copy(update={"prompt_tokens": max(1, round(wl.prompt_tokens * f)),
                                 "output_tokens": max(1, round(wl.output_tokens * f))})


def _row(name: str, p: Prediction | None, spec: ModelSpec, dep: Deployment, f: float, error: str = "") -> dict:
    row = {"variant": name, "model": spec.name, "params": spec.param_count, "tokens_per_text": f,
           "weight_dtype": dep.weight_dtype or "native", "activation_dtype": dep.activation_dtype or "native",
           "kv_dtype": dep.kv_dtype or "native", "tp": dep.tp, "pp": dep.pp, "ep": dep.ep}
    if p is None:
        row.update({m: math.nan for m in METRICS})
        row.update(error=error, notes="")
        return row
    d = p.model_dump()
    row.update({m: d.get(m, math.nan) for m in METRICS if m != "text_tpot_s"})
    row["text_tpot_s"] = p.tpot_s * f
    row["compute_dtype"] = p.compute_dtype
    row.update(error="", notes="; ".join(p.notes))
    return row


def compare(model, hardware, workload: Workload, baseline: Deployment | None = None,
            variants: dict | None = None) -> pd.DataFrame:
    """Predict the baseline and every variant on one hardware and workload; one row each, baseline first.

    `<metric>_vs_baseline` columns hold variant / baseline for `DELTA_METRICS` (below 1 for
    TPOT means faster). See the module docstring for what a variant may be.
    """
    import pandas as pd

    hw = as_hardware(hardware)
    base_model = as_model(model)
    base_dep = baseline or Deployment()
    if not variants:
        raise SpecError("variants", "give at least one variant, e.g. {'int4': Deployment(weight_dtype='int4')}")
    if BASELINE in variants:
        raise SpecError("variants", f"{BASELINE!r} names the baseline row; call the variant something else")
    rows = [_row(BASELINE, predict(base_model, hw, workload, base_dep), base_model, base_dep, 1.0)]
    for name, v in variants.items():
        v = _as_variant(name, v)
        spec = base_model if v.model is None else as_model(v.model)
        dep = v.deployment or base_dep
        try:
            p = predict(spec, hw, _scaled(workload, v.tokens_per_text), dep)
            rows.append(_row(name, p, spec, dep, v.tokens_per_text))
        except SpecError as exc:
            rows.append(_row(name, None, spec, dep, v.tokens_per_text, str(exc)))
    df = pd.DataFrame(rows).set_index("variant")
    base = df.loc[BASELINE]
    for m in DELTA_METRICS:
        df[f"{m}_vs_baseline"] = pd.to_numeric(df[m], errors="coerce") / float(base[m]) if float(base[m]) else math.nan
    df.attrs["hardware"] = hw.name
    df.attrs["workload"] = workload.model_dump()
    return df


# ------------------------------------------------------------ variants written as text
# spec transforms (`roofline.techniques`) a variant may name beside Deployment fields
TRANSFORM_KEYS = {"keep_layers", "keep_heads", "keep_ffn", "keep_experts", "attention", "kv_heads", "sliding_window", "cla",
                  "vocab", "parallel_blocks"}


def parse_pairs(text: str, where: str) -> dict[str, str]:
    """'K=V,K=V' -> {K: V}; `where` names the flag in an error."""
    out = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        if "=" not in item:
            raise SpecError(where, f"expected KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def deployment_from_pairs(pairs: dict[str, str], base: Deployment | None, where: str) -> Deployment:
    """`base` with the Deployment fields (and `speculative.*` keys) of `pairs` replaced, validated. `none` (any case)
    for a field that may be None is None: `engine=none` is the bare roofline, as `--engine none` is elsewhere,
    `weight_dtype=none` the model's native format."""
    spec = {k.split(".", 1)[1]: v for k, v in pairs.items() if k.startswith("speculative.")}
    fields = {k: v for k, v in pairs.items() if not k.startswith("speculative.")}
    unknown = sorted(set(fields) - set(Deployment.model_fields))
    if unknown:
        raise SpecError(where, f"unknown key {unknown[0]!r}; see `roofline compare --help` for the keys")
    fields = {k: None if v.lower() == "none" and type(None) in typing.get_args(Deployment.model_fields[k].annotation) else v
              for k, v in fields.items()}
    try:
        data = {**(base.model_dump(exclude={"speculative"}) if base else {}), **fields}
        if spec:
            data["speculative"] = spec
        elif base is not None and base.speculative is not None:
            data["speculative"] = base.speculative
        return Deployment.model_validate(data)
    except ValidationError as exc:
        raise validation_message(exc, where) from None


def parse_variant(text: str, base_model: ModelSpec, base_dep: Deployment) -> tuple[str, Variant]:
    """'NAME:KEY=VALUE,...' -> (name, Variant); `roofline compare --help` lists the keys."""
    if ":" not in text:
        raise SpecError("--variant", f"expected NAME:KEY=VALUE[,...], got {text!r}")
    name, rest = text.split(":", 1)
    name = name.strip()
    where = f"--variant {name}"
    pairs = parse_pairs(rest, where)
    model = as_model(pairs.pop("model")) if "model" in pairs else base_model
    f = pairs.pop("tokens_per_text", "1")
    try:
        tokens_per_text = float(f)
    except ValueError:
        raise SpecError(f"{where}: tokens_per_text", f"expected a number, got {f!r}") from None
    tr = {k: pairs.pop(k) for k in list(pairs) if k in TRANSFORM_KEYS}
    try:
        keep = {k: float(tr.pop(k)) for k in ("keep_layers", "keep_heads", "keep_ffn", "keep_experts") if k in tr}
        if keep:
            model = T.prune(model, **keep)
        if "attention" in tr:
            model = T.with_attention(model, tr.pop("attention"), int(tr.pop("kv_heads")) if "kv_heads" in tr else None)
        if "sliding_window" in tr:
            model = T.with_sliding_window(model, int(tr.pop("sliding_window")))
        if "cla" in tr:
            model = T.with_cla(model, int(tr.pop("cla")))
        if "vocab" in tr:
            model = T.with_vocab(model, int(tr.pop("vocab")))
        if tr.pop("parallel_blocks", "false").lower() in ("1", "true", "yes"):
            model = T.with_parallel_blocks(model)
    except ValueError as exc:
        if isinstance(exc, SpecError):
            raise SpecError(f"{where}: {exc.field}", exc.msg) from None
        raise SpecError(where, f"a transform value is not a number: {exc}") from None
    if tr:
        raise SpecError(where, f"{sorted(tr)[0]} needs attention=... alongside it")
    dep = deployment_from_pairs(pairs, base_dep, where) if pairs else base_dep
    return name, Variant(model=model, deployment=dep, tokens_per_text=tokens_per_text)
