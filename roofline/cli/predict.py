"""`roofline predict`: TTFT, TPOT, throughput, memory and cost of one scenario on one or more devices."""

from __future__ import annotations

import json

from pydantic import ValidationError

from .. import fmt
from ..errors import validation_message
from ..predict import Prediction, predict, predict_fitting
from ..registry import load_model
from ..workload import Deployment
from . import args

HELP = "TTFT, TPOT, throughput, memory and cost of one scenario on one or more devices"
DESCRIPTION = None


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="model id (see `roofline models`), a spec .yaml path or a Hugging Face "
                                                  "config.json path; several comma-separated")
    p.add_argument("--hardware", required=True, help="hardware id (see `roofline hardware`) or a profile .yaml path; several comma-separated")
    args.add_workload_arguments(p)
    p.add_argument("--tp", default="1", help="tensor-parallel GPUs (default 1), or 'auto' for the fewest that fit")
    p.add_argument("--pp", default="1", help="pipeline-parallel stages (default 1); a replica has tp x pp x ep GPUs")
    args.add_attention_dp_argument(p, tp_auto=True)
    p.add_argument("--ep", default="1", help="expert-parallel GPUs for a MoE model's experts (default 1; needs tp 1)")
    p.add_argument("--weight-dtype", help="weight storage format (default: the model's native dtype)")
    p.add_argument("--activation-dtype", help="compute format (default: native)")
    p.add_argument("--kv-dtype", help="KV-cache format (default: native)")
    p.add_argument("--weight-group-size", help="elements per quantization scale (default: the weight dtype's own, e.g. "
                                                        "one per output row for int8, groups of 128 for int4, 64 for nf4, 32 for fp4)")
    p.add_argument("--attention", choices=["flash", "naive"], default="flash",
                   help="attention kernel IO model: flash (default; reads K and V once) or naive (also writes and "
                        "reads the score matrix)")
    p.add_argument("--engine", help=args.ENGINE_HELP)
    args.add_calibration_argument(p)
    args.add_price_argument(p)
    p.add_argument("--operators", action="store_true", help="also print the per-operator table")
    p.add_argument("--json", action="store_true",
                   help="print the predictions as JSON: always a list, one object per (model, hardware), each with its operators")


def predictions(a) -> list[Prediction]:
    """One prediction per (model, hardware) of the flags."""
    models = [load_model(m) for m in args.ids(a.model, "model")]
    hws = args.hardware_profiles(args.ids(a.hardware, "hardware"), a)
    auto = a.tp.strip() == "auto"  # a stand-in tp the other flags allow (attention_dp needs tp > 1); predict_fitting picks tp
    wl = args.workload(a)
    try:
        dep = Deployment(
            tp=(2 if a.attention_dp else 1) if auto else args.number(a.tp, "tp", int), pp=args.number(a.pp, "pp", int), ep=args.number(a.ep, "ep", int),
            weight_dtype=a.weight_dtype, activation_dtype=a.activation_dtype,
            kv_dtype=a.kv_dtype, weight_group_size=args.number(a.weight_group_size, "weight_group_size", int),
            attention_impl=a.attention, engine=args.engine(a.engine), attention_dp=a.attention_dp,
        )
    except ValidationError as exc:
        raise validation_message(exc, "") from None  # flags: the field alone
    call = predict_fitting if auto else predict
    return [call(m, hw, wl, dep) for m in models for hw in hws]


def headline_table(preds: list[Prediction]) -> str:
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


def operator_table(p: Prediction) -> str:
    df = p.operators
    rows = [[f"{r.phase} {r.op}", r.layers_group, fmt.rate(r.flops, "FLOP"), fmt.gigabytes(r.hbm_bytes),
             fmt.seconds(r.time_s), fmt.seconds(r.floor_s), r.bound] for r in df.itertuples()]
    return f"\nOperators of {p.model} on {p.hardware} (decode rows: mean step):\n" + fmt.table(
        ["operator", "layers", "FLOPs", "HBM bytes", "time", "floor", "bound"], rows)


def run(a) -> str:
    preds = predictions(a)
    if a.json:
        docs = [{**p.model_dump(mode="json"), "operators": p.operators.to_dict(orient="records")} for p in preds]
        return json.dumps(docs, indent=2)  # one shape whatever the count: a list
    text = headline_table(preds)
    if a.operators:
        text += "".join("\n" + operator_table(p) for p in preds)
    return text
