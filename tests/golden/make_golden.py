"""Golden outputs: the figures the CLI and the library print today, for about thirty varied scenarios.

Issue 11 restructures everything above `predict` and promises identical behaviour; these files are that
promise written down. Each case is a function of nothing but the shipped specs and profiles: the CLI's
`--json` of predict, plan and compare, the CSV (and the date-free Markdown) of `report`, and the frames
and records of `predict`, `sweep`, `steady_state`, `frontier` and `disaggregate` for deployments the CLI
cannot express (pp, ep, multi-node, speculative decoding, prefix caching, offload, sparsity).

    python tests/golden/make_golden.py          # rewrite every file (only on purpose: a changed number)
    python tests/golden/make_golden.py NAME...  # rewrite some

`tests/test_golden.py` recomputes every case and compares it with its file, floats to 1e-12 relative.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import sys
import tempfile
from pathlib import Path

import roofline as rl

HERE = Path(__file__).resolve().parent


def _cli(*argv: str) -> str:
    from roofline.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(list(argv))
    assert rc == 0, f"roofline {' '.join(argv)} exited {rc}"
    return out.getvalue()


def _cli_json(*argv: str):
    return json.loads(_cli(*argv, "--json"))


def _prediction(p) -> dict:
    """A Prediction as `roofline predict --json` writes it."""
    return json.loads(json.dumps({**p.model_dump(mode="json"), "operators": p.operators.to_dict(orient="records")}))


def _frame(df) -> dict:
    """A DataFrame as columns -> values (categoricals as strings, missing as None) plus its attrs."""
    def cell(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        try:
            import pandas as pd

            if v is pd.NA:
                return None
        except ImportError:  # pragma: no cover
            pass
        return v.item() if hasattr(v, "item") else v

    cols = {str(c): [cell(v) for v in df[c].astype(object).tolist()] for c in df.columns}
    index = [cell(v) for v in df.index.astype(object).tolist()]
    return json.loads(json.dumps({"columns": cols, "index": index, "attrs": _plain(df.attrs)}, default=str))


def _plain(x):
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x.item() if hasattr(x, "item") else x


def _report(*argv: str) -> dict:
    with tempfile.TemporaryDirectory() as d:
        text = _cli("report", "--out", d, "--no-progress", *argv)
        csv = (Path(d) / "report.csv").read_text()
        md = (Path(d) / "report.md").read_text()
    stdout = [line for line in text.splitlines() if not line.startswith("wrote ")]
    # the Markdown carries the generation date and the simulator version: drop those lines
    md_lines = [line for line in md.splitlines() if "Generated" not in line and "roofline " not in line]
    return {"stdout": stdout, "csv": csv.splitlines(), "markdown": md_lines}


def _predict(model, hw, wl, **dep):
    return _prediction(rl.predict(rl.load_model(model), rl.load_hardware(hw), rl.Workload(**wl), rl.Deployment(**dep)))


W = dict(batch_size=8, prompt_tokens=2048, output_tokens=256)

CASES = {
    # ---- `roofline predict --json`
    "predict_llama70b_h100_auto": lambda: _cli_json("predict", "--model", "llama-3.1-70b", "--hardware", "h100-sxm",
                                                    "--batch-size", "8", "--prompt-tokens", "2048", "--output-tokens", "256", "--tp", "auto"),
    "predict_llama8b_a100_b1": lambda: _cli_json("predict", "--model", "llama-3.1-8b", "--hardware", "a100-sxm-80gb",
                                                 "--batch-size", "1", "--prompt-tokens", "1024", "--output-tokens", "256"),
    "predict_deepseek_v3_h200_fp8": lambda: _cli_json("predict", "--model", "deepseek-v3", "--hardware", "h200", "--tp", "8",
                                                      "--batch-size", "16", "--prompt-tokens", "4096", "--output-tokens", "512",
                                                      "--weight-dtype", "fp8", "--activation-dtype", "fp8"),
    "predict_mixtral_mi300x": lambda: _cli_json("predict", "--model", "mixtral-8x7b", "--hardware", "mi300x", "--batch-size", "16",
                                                "--prompt-tokens", "1000", "--output-tokens", "300", "--tp", "2"),
    "predict_gemma2_sliding_l40s": lambda: _cli_json("predict", "--model", "gemma-2-27b", "--hardware", "l40s", "--tp", "auto",
                                                     "--batch-size", "4", "--prompt-tokens", "6000", "--output-tokens", "1000"),
    "predict_llama70b_int4": lambda: _cli_json("predict", "--model", "llama-3.1-70b", "--hardware", "h100-sxm", "--tp", "2",
                                               "--weight-dtype", "int4", "--weight-group-size", "128", "--kv-dtype", "fp8",
                                               "--batch-size", "32", "--prompt-tokens", "512", "--output-tokens", "128"),
    "predict_falcon7b_naive_a10g": lambda: _cli_json("predict", "--model", "falcon-7b", "--hardware", "a10g", "--attention", "naive",
                                                     "--batch-size", "2", "--prompt-tokens", "1500", "--output-tokens", "1"),
    "predict_multi_hw_does_not_fit": lambda: _cli_json("predict", "--model", "llama-2-7b,qwen3-30b-a3b", "--hardware", "h100-sxm,l4,rtx-4090",
                                                       "--batch-size", "64", "--prompt-tokens", "3000", "--output-tokens", "700"),
    "predict_gpt_oss_b200": lambda: _cli_json("predict", "--model", "gpt-oss-120b", "--hardware", "b200", "--batch-size", "24",
                                              "--prompt-tokens", "8192", "--output-tokens", "1024"),
    # ---- `predict` for deployments the predict CLI cannot express
    "predict_llama70b_pp2_tp4": lambda: _predict("llama-3.1-70b", "h100-sxm", W, tp=4, pp=2),
    "predict_llama70b_pp4_microbatches": lambda: _predict("llama-3.1-70b", "a100-sxm-80gb", dict(W, batch_size=32), tp=2, pp=4, pp_microbatches=8),
    "predict_deepseek_v3_ep16_multinode": lambda: _predict("deepseek-v3", "h200", dict(batch_size=64, prompt_tokens=2000, output_tokens=400),
                                                           ep=16, weight_dtype="fp8", activation_dtype="fp8"),
    "predict_llama405b_tp16_roce": lambda: _predict("llama-3.1-405b", "h100-sxm", W, tp=16, network="roce-400",
                                                    weight_dtype="fp8", activation_dtype="fp8"),
    "predict_llama405b_tp8_pp2_multinode": lambda: _predict("llama-3.1-405b", "h100-sxm", W, tp=8, pp=2),
    "predict_speculative_draft": lambda: _predict("llama-3.1-70b", "h100-sxm", dict(batch_size=4, prompt_tokens=1024, output_tokens=256), tp=4,
                                                  speculative={"draft": "llama-3.2-1b", "k": 5, "acceptance_rate": 0.75}),
    "predict_speculative_mtp": lambda: _predict("deepseek-v3", "h200", dict(batch_size=2, prompt_tokens=1024, output_tokens=256), tp=8,
                                                weight_dtype="fp8", activation_dtype="fp8", speculative={"k": 2}),
    "predict_paged_prefix_offload": lambda: _predict("llama-3.1-8b", "l4", dict(batch_size=12, prompt_tokens=3000, output_tokens=500),
                                                     kv_allocation="paged", kv_block_tokens=32, prefix_tokens=1000, prefix_hit_rate=0.6,
                                                     weight_offload_fraction=0.25, kv_offload_fraction=0.1),
    "predict_sparse_2_4_contiguous": lambda: _predict("qwen2.5-7b", "h100-sxm", dict(batch_size=16, prompt_tokens=700, output_tokens=90),
                                                      sparsity="2:4", kv_allocation="contiguous", kv_reserved_tokens=4096),
    "predict_fallback_int8_mi300x": lambda: _predict("mistral-7b", "h100-pcie", dict(batch_size=3, prompt_tokens=333, output_tokens=77),
                                                     weight_dtype="int4", activation_dtype="int4", on_unsupported_dtype="fallback"),
    # ---- `roofline compare --json`
    "compare_llama8b_variants": lambda: json.loads(_cli(
        "compare", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--batch-size", "8", "--prompt-tokens", "2048",
        "--output-tokens", "256", "--variant", "int4:weight_dtype=int4,weight_group_size=128",
        "--variant", "fp8:weight_dtype=fp8,activation_dtype=fp8,kv_dtype=fp8", "--variant", "tp2:tp=2",
        "--variant", "spec:speculative.draft=llama-3.2-1b,speculative.k=4", "--variant", "pruned:keep_layers=0.75,keep_ffn=0.8",
        "--variant", "mqa:attention=mqa", "--variant", "swa:sliding_window=1024", "--variant", "student:model=llama-3.2-3b,tokens_per_text=0.9",
        "--variant", "bad:weight_dtype=fp4", "--json")),
    "compare_deepseek_baseline": lambda: json.loads(_cli(
        "compare", "--model", "deepseek-v3", "--hardware", "h200", "--baseline", "tp=8,weight_dtype=fp8,activation_dtype=fp8",
        "--variant", "mtp:speculative.k=1", "--variant", "ep8:tp=1,ep=8", "--variant", "pp2:tp=4,pp=2", "--json")),
    # ---- `roofline plan --json`
    "plan_llama70b_best": lambda: _cli_json("plan", "--model", "llama-3.1-70b", "--requests-per-s", "10", "--prompt-tokens", "2048",
                                            "--output-tokens", "256", "--ttft-slo-s", "2", "--tpot-slo-s", "0.05",
                                            "--hardware", "h100-sxm,a100-sxm-80gb,mi300x,l40s"),
    "plan_llama8b_lognormal_chunked_all": lambda: _cli_json("plan", "--model", "llama-3.1-8b", "--requests-per-s", "25",
                                                            "--prompt-tokens", "lognormal:1500:0.6", "--output-tokens", "uniform:100:400",
                                                            "--ttft-slo-s", "1.5", "--tpot-slo-s", "0.04", "--ttft-percentile", "0.95",
                                                            "--hardware", "h200,l4", "--chunk-tokens", "512", "--max-batch-size", "128",
                                                            "--all-options", "--top", "25"),
    "plan_deepseek_ep_multinode": lambda: _cli_json("plan", "--model", "deepseek-v3", "--requests-per-s", "5", "--prompt-tokens", "1024",
                                                    "--output-tokens", "256", "--ttft-slo-s", "5", "--tpot-slo-s", "0.1",
                                                    "--hardware", "h200", "--tp", "8", "--pp", "1,2", "--ep", "8,16,32", "--network", "roce-400"),
    "plan_llama405b_pp": lambda: _cli_json("plan", "--model", "llama-3.1-405b", "--requests-per-s", "2", "--prompt-tokens", "normal:1000:300",
                                           "--output-tokens", "empirical:100=0.5,500=0.5", "--ttft-slo-s", "3", "--tpot-slo-s", "0.08",
                                           "--hardware", "h100-sxm,a100-sxm-40gb", "--pp", "1,2,4", "--all-options"),
    "plan_llama70b_concurrency": lambda: _cli_json("plan", "--model", "llama-3.1-70b", "--concurrency", "512", "--prompt-tokens", "2048",
                                                   "--output-tokens", "256", "--ttft-slo-s", "2", "--tpot-slo-s", "0.05",
                                                   "--hardware", "h100-sxm,mi300x"),
    # ---- `roofline serve --json`: a rate, a closed loop below and past saturation, offline
    "serve_llama8b_loads": lambda: [json.loads(_cli("serve", "--model", "llama-3.1-8b", "--hardware", "h100-sxm,l40s", "--prompt-tokens",
                                                    "1000", "--output-tokens", "200", *load, "--json")) for load in (
        ("--requests-per-s", "5"), ("--concurrency", "1,64,4096"), ("--offline",))],
    # ---- `roofline report`
    "report_continuous": lambda: _report("--model", "llama-3.1-70b", "--hardware", "h100-sxm,l40s,mi300x"),
    "report_static": lambda: _report("--model", "llama-3.1-8b,mixtral-8x7b", "--hardware", "h100-sxm,a10g", "--serving", "static",
                                     "--requests-per-s", "4", "--prompt-tokens", "1024", "--output-tokens", "200",
                                     "--ttft-slo-s", "1", "--tpot-slo-s", "0.03", "--max-batch-size", "64"),
    # ---- library frames and records
    "sweep_grid": lambda: _frame(rl.sweep(["llama-3.1-8b", "mixtral-8x7b", "gemma-2-9b"], ["h100-sxm", "mi300x"],
                                          batch_size=[1, 64], prompt_tokens=[512, 4096], output_tokens=[1, 128], tp=[1, 3, 4],
                                          weight_dtype=[None, "int4"], kv_dtype=[None, "fp8"])),
    "sweep_deployment": lambda: _frame(rl.sweep("qwen3-235b-a22b", ["h200", "b200"], batch_size=[1, 32], prompt_tokens=[1024, 200000],
                                                output_tokens=[256], tp=[8], deployment=rl.Deployment(ep=1, kv_allocation="paged"))),
    "steady_state_lognormal": lambda: _plain(json.loads(rl.steady_state(
        "llama-3.1-70b", "h100-sxm", 2.0, "lognormal:2048:0.5", 256, rl.Deployment(tp=4)).model_dump_json())),
    "steady_state_chunked_pp": lambda: _plain(json.loads(rl.steady_state(
        "llama-3.1-70b", "a100-sxm-80gb", 1.5, 3000, "uniform:64:512", rl.Deployment(tp=4, pp=2), chunk_tokens=1024,
        max_batch_size=96).model_dump_json())),
    "steady_state_moe_ep_unstable": lambda: _plain(json.loads(rl.steady_state(
        "qwen3-30b-a3b", "h100-sxm", 500.0, 1000, 300, rl.Deployment(ep=4)).model_dump_json())),
    "frontier_two_devices": lambda: _frame(rl.frontier("llama-3.1-8b", ["h100-sxm", "l40s"], 1024, "lognormal:256:0.4")),
    "disaggregate_llama70b": lambda: _plain(json.loads(rl.disaggregate(
        "llama-3.1-70b", "h100-sxm", 8.0, 2048, 256, 1.0, 0.05, prefill=rl.Deployment(tp=2), decode=rl.Deployment(tp=4)).model_dump_json())),
}


def compute(name: str):
    return CASES[name]()


def path_of(name: str) -> Path:
    return HERE / f"{name}.json"


def write(name: str) -> None:
    path_of(name).write_text(json.dumps(compute(name), sort_keys=True, allow_nan=True) + "\n")


if __name__ == "__main__":
    for n in sys.argv[1:] or CASES:
        write(n)
        print(f"wrote {path_of(n).relative_to(HERE.parent.parent)}")
