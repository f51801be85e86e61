"""Kernel-level check of uneven expert routing against aiconfigurator-core's MoE tables.

The tables (`moe/<framework>/<version>/moe_perf.parquet`) time one fused MoE layer under three token distributions:
`balanced` (each token's k experts spread round-robin: T tokens touch min(E, T·k) experts, T·k / touched rows each)
and `power_law_1.01` / `power_law_1.2` (per-expert loads from the power law `roofline.ops.expert_load_shares`
describes; with `moe_ep_size` > 1 the timed GPU holds the busiest rank's E/ep experts). Nothing is fitted here: for
every shape, token count and ep the model's power-law / balanced time ratio (`routing_ratios`) is set beside the
table's. The model's two times use the same fused-layer curve (`calibration.MoeCurve`, fitted on balanced rows at
ep 1), so the curve's own error cancels and the ratio isolates the routing model: the busiest rank's rows
(`ops.busiest_rank_load`); within one GPU the model times the layer as balanced (ratio 1 at ep 1).

    python -m calibrate.moe_routing [--system h200_sxm] [--framework trtllm] [--version 1.3.0rc20]
        [--source moe_torch_flow_cutlass] [--dtype fp8_block] [--calibration calibrate/public/h200-trtllm.json]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

import roofline as rl
from roofline import ops as O
from roofline.calibration import attach_calibration, load_calibration
from roofline.roofline import Ceilings, OpTable, time_ops
from roofline.workload import Deployment, ResolvedDeployment

from .public import data_root
from .public_moe import TABLE_FORMATS, TABLE_TIME_S

BALANCED = "balanced"
EP_SIZES = (1, 2, 4, 8)
MIN_TOKENS = 16  # below, the layer is its fixed time and launches under either distribution
TOKEN_BINS = (0, 255, 1023, 4095, np.inf)
TOKEN_BIN_LABELS = ("16-192", "256-768", "1k-3k", "4k-16k")


def paired_rows(df: pd.DataFrame, source: str, table_dtype: str, distribution: str) -> pd.DataFrame:
    """Balanced and `distribution` latency (s) of each (shape, ep, tokens) at moe_tp_size 1, one kernel source."""
    rows = df[(df["kernel_source"] == source) & (df["moe_dtype"] == table_dtype) & (df["moe_tp_size"] == 1)
              & df["moe_ep_size"].isin(EP_SIZES) & (df["num_tokens"] >= MIN_TOKENS) & (df["latency"] > 0)]
    keys = ["hidden_size", "inter_size", "num_experts", "topk", "moe_ep_size", "num_tokens"]
    pairs = rows.pivot_table(index=keys, columns="distribution", values="latency", aggfunc="median")
    if BALANCED not in pairs or distribution not in pairs:
        return pd.DataFrame(columns=keys + [BALANCED, distribution])
    return (pairs[[BALANCED, distribution]].dropna() * TABLE_TIME_S).reset_index()


def layer_s(hw, rd: ResolvedDeployment, compute: str, tokens: float, experts: int, k: int, hidden: int, inter: int,
            ep: int, alpha: float | None) -> float:
    """One GPU's fused MoE layer (`ops.fused_moe_ops`) as a table row times it: all T tokens' rows over E experts, the
    timed GPU holding E/ep of them and touching min(E, T·k)/ep (the tables' balanced spread); with `alpha`, the
    busiest rank's rows (`ops.busiest_rank_load`), else the mean rank's."""
    rows = tokens * k
    load = 1.0 if alpha is None else O.busiest_rank_load(tokens, experts, k, ep, alpha)
    ops = O.fused_moe_ops(rd, "moe", 1, tokens / ep, rows * load / ep, min(float(experts), rows) / ep, float(hidden),
                          (2.0 * inter, float(hidden)), (float(hidden), float(inter)), k, True)
    return float(np.sum(time_ops(OpTable.of(ops, ()), Ceilings.of(hw, compute), 1).time_s))


def routing_ratios(pairs: pd.DataFrame, hw, table_dtype: str, alpha: float) -> pd.DataFrame:
    """`pairs` with the table's and the model's power-law / balanced ratio per row, and the model's error on it."""
    _, weight, compute, granularity, group = TABLE_FORMATS[table_dtype]
    dep = Deployment(weight_dtype=weight, activation_dtype=compute, weight_scale_granularity=granularity,
                     weight_group_size=group, expert_routing_alpha=None)
    rd = ResolvedDeployment.of(dep, "bf16")
    out = pairs.copy()
    model = []
    for h, inter, experts, k, ep, tokens in pairs[["hidden_size", "inter_size", "num_experts", "topk", "moe_ep_size",
                                                   "num_tokens"]].itertuples(index=False):
        args = (hw, rd, compute, float(tokens), int(experts), int(k), int(h), int(inter), int(ep))
        model.append(layer_s(*args, alpha) / layer_s(*args, None))
    out["table_ratio"] = pairs.iloc[:, -1] / pairs[BALANCED]
    out["model_ratio"] = model
    out["error"] = out["model_ratio"] / out["table_ratio"] - 1
    out["balanced_error"] = 1 / out["table_ratio"] - 1  # a model without uneven routing predicts ratio 1
    out["tokens"] = pd.cut(out["num_tokens"], TOKEN_BINS, labels=TOKEN_BIN_LABELS)
    return out


def summary(ratios: pd.DataFrame) -> pd.DataFrame:
    """Median table and model ratio, and median |error| of the model and of balanced routing, by ep and token range."""
    absolute = ratios.assign(error=ratios["error"].abs(), balanced_error=ratios["balanced_error"].abs())
    return absolute.groupby(["moe_ep_size", "tokens"], observed=True).agg(
        rows=("error", "size"), table=("table_ratio", "median"), model=("model_ratio", "median"),
        model_abs_error=("error", "median"), balanced_abs_error=("balanced_error", "median"))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--system", default="h200_sxm")
    p.add_argument("--hardware", default="h200", help="our hardware id for the system")
    p.add_argument("--framework", default="trtllm")
    p.add_argument("--version", default="1.3.0rc20")
    p.add_argument("--source", default="moe_torch_flow_cutlass", help="the table's kernel_source")
    p.add_argument("--dtype", default="fp8_block", choices=sorted(TABLE_FORMATS), help="the table's moe_dtype")
    p.add_argument("--alpha", type=float, default=1.01, help="the power law's exponent: 1.01 or 1.2")
    p.add_argument("--calibration", default="calibrate/public/h200-trtllm.json", help="the fused-layer curve's file")
    a = p.parse_args(argv)
    df = pd.read_parquet(data_root() / a.system / "moe" / a.framework / a.version / "moe_perf.parquet")
    hw = attach_calibration(rl.load_hardware(a.hardware, analytical=True), load_calibration(a.calibration))
    ratios = routing_ratios(paired_rows(df, a.source, a.dtype, f"power_law_{a.alpha:g}"), hw, a.dtype, a.alpha)
    print(summary(ratios).round(3).to_string())
    print(f"all {len(ratios)} rows: median |model / table - 1| {np.median(np.abs(ratios['error'])):.3f}, "
          f"balanced routing {np.median(np.abs(ratios['balanced_error'])):.3f}")


if __name__ == "__main__":
    main()
