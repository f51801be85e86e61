"""Kernel-level audit of one DeepSeek-V3 decode step on 8x H200 (issue 12): our operator table against NVIDIA's
measured kernel tables.

For one MoE layer of a decode step (tp 8, block-FP8 weights computed in FP8, bf16 KV, context 3600), prints our
per-layer time and launches of every operator (`roofline.predict(...).operators`, engine sglang or vllm, the shipped
calibration) next to the measured time, at the same shape, of the kernel(s) that run it in the tables of
`aiconfigurator-core` (read as parquet, data only; `pip install roofline[public-data]`):

* GEMMs: `gemm/sglang/0.5.14` fp8_block rows (DeepGEMM), nearest tabulated N and K (the table's grid), M = batch;
* the absorbed MLA batched GEMMs: `mla_bmm/<framework>` mla_gen_pre + mla_gen_post, 16 heads (128 / tp 8);
* the MLA module as a whole (projections, RoPE, batched GEMMs, attention, o_proj): `mla/trtllm/1.3.0rc20` and
  `mla/vllm/0.24.0` mla_generation_module rows, 16 heads, gemm fp8_block, bf16 KV, step 4096;
* the fused MoE layer: `moe/sglang/0.5.14` (the version the shipped h200-sglang calibration fits), `moe/sglang/0.5.10`,
  `moe/vllm/0.24.0` and `moe/trtllm/1.3.0rc20`, fp8_block, moe_tp 8, balanced routing (T tokens touch min(E, T·k)
  experts: 256 at T = 32, where uniform routing touches 163; compare at equal experts touched);
* the per-token-group FP8 quantization: `quantize/<framework>` scale_matrix (+ compute_scale) rows, M = batch;
* the all-reduce of batch x 7168 bf16 elements: `comm/<framework>/<version>/custom_allreduce_perf` CUDA-graph rows at
  tp 8 (`message_size` counts elements), nearest tabulated size.

Nothing is fitted here and nothing is written: the audit says which kernels the table lacks and where its times
differ from the kernels'. Run: `python -m calibrate.dsdecode_audit [--batch 4] [--engine sglang]`.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

import roofline as rl

from . import public as P

SYSTEM = "h200_sxm"
HEADS_PER_GPU = 16  # 128 heads / tp 8
CONTEXT = 3600
MOE_LAYERS = 58  # DeepSeek-V3: 61 layers, the first 3 dense
MS = 1e-3  # the tables' latency unit
# our GEMM -> (N, K) of this GPU's slice at tp 8 (DeepSeek-V3 config.json shapes)
GEMM_SHAPES = {"q_a_proj": (1536, 7168), "kv_a_proj": (576, 7168), "q_b_proj": (3072, 1536), "o_proj": (7168, 2048),
               "shared_up": (512, 7168), "shared_down": (7168, 256), "router": (256, 7168)}


def _table(path: str) -> pd.DataFrame:
    return pd.read_parquet(P.data_root() / SYSTEM / path)


def _nearest(values, x):
    values = np.array(sorted(set(values)), dtype=float)
    return values[np.argmin(np.abs(np.log(values / x)))]


def measured_gemm_s(n: int, k: int, m: int, dtype: str) -> float:
    """The sglang 0.5.14 GEMM table's time at (M, N, K), its grid's nearest N and K (log distance), M nearest."""
    g = _table("gemm/sglang/0.5.14/gemm_perf.parquet")
    g = g[g.gemm_dtype == dtype]
    g = g[(g.n == _nearest(g.n, n)) & (g.k == _nearest(g.k, k))]
    return float(g[g.m == _nearest(g.m, m)].latency.median()) * MS


def measured_kernels(batch: int) -> dict[str, float]:
    """Seconds per layer of each measured kernel family at this batch (see the module docstring)."""
    out = {f"gemm {name}": measured_gemm_s(n, k, batch, "bfloat16" if name == "router" else "fp8_block")
           for name, (n, k) in GEMM_SHAPES.items()}  # the router runs in bf16
    for fw, ver in (("sglang", "0.5.14"), ("vllm", "0.24.0"), ("trtllm", "1.3.0rc20")):
        b = _table(f"mla_bmm/{fw}/{ver}/mla_bmm_perf.parquet")
        b = b[(b.num_heads == HEADS_PER_GPU) & (b.bmm_dtype == "bfloat16")]
        b = b[b.num_tokens == _nearest(b.num_tokens, batch)]
        out[f"mla_bmm pre+post bf16 ({fw})"] = float(b.latency.sum()) * MS
        q = _table(f"quantize/{fw}/{ver}/scale_matrix_perf.parquet")
        q = q[(q.k == 7168) & (q.m == _nearest(q.m, batch))]
        out[f"quantize [M, 7168] ({fw})"] = float(q.latency.iloc[0]) * MS
    for fw, ver in (("trtllm", "1.3.0rc20"), ("vllm", "0.24.0")):
        a = _table(f"mla/{fw}/{ver}/mla_generation_module_perf.parquet")
        a = a[(a.num_heads == HEADS_PER_GPU) & (a.gemm_type == "fp8_block") & (a.kv_cache_dtype == "bfloat16")]
        a = a[(a.batch_size == _nearest(a.batch_size, batch)) & (a.step == _nearest(a.step, CONTEXT))]
        out[f"MLA module ({fw})"] = float(a.latency.median()) * MS
    for fw, ver in (("sglang", "0.5.14"), ("sglang", "0.5.10"), ("vllm", "0.24.0"), ("trtllm", "1.3.0rc20")):
        m = _table(f"moe/{fw}/{ver}/moe_perf.parquet")
        m = m[(m.hidden_size == 7168) & (m.inter_size == 2048) & (m.num_experts == 256) & (m.topk == 8)
              & (m.moe_dtype == "fp8_block") & (m.moe_tp_size == 8) & (m.moe_ep_size == 1) & (m.distribution == "balanced")]
        out[f"fused MoE ({fw} {ver})"] = float(m[m.num_tokens == _nearest(m.num_tokens, batch)].latency.median()) * MS
    for fw, ver, col in (("sglang", "0.5.14", "backend"), ("vllm", "0.24.0", "backend"), ("trtllm", "1.3.0rc20", None)):
        a = _table(f"comm/{fw}/{ver}/custom_allreduce_perf.parquet")
        a = a[a.num_gpus == 8]
        if col is not None:
            a = a[a[col].str.endswith("graph")]
        a = a[a.message_size == _nearest(a.message_size, batch * 7168)]  # message_size counts bf16 elements
        out[f"all-reduce x2 ({fw})"] = 2 * float(a.latency.median()) * MS
    return out


def our_layer(batch: int, engine: str) -> tuple[pd.DataFrame, float]:
    """Our per-MoE-layer operator times (s) and launches, and the predicted decode step (TPOT, s)."""
    p = rl.predict("deepseek-v3", "h200", rl.Workload(batch_size=batch, prompt_tokens=CONTEXT, output_tokens=2),
                   rl.Deployment(tp=8, activation_dtype="fp8", engine=engine))
    df = p.operators
    d = df[(df.phase == "decode") & (df.layers_group == "full/moe")]
    return pd.DataFrame({"op": d.op, "time_s": d.time_s / MOE_LAYERS, "launches": d.launches / MOE_LAYERS}), p.tpot_s


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--engine", default="sglang")
    a = ap.parse_args(argv)
    ours, tpot = our_layer(a.batch, a.engine)
    lines = [f"DeepSeek-V3 decode, 8x H200 tp 8, batch {a.batch}, context {CONTEXT}, engine {a.engine}: "
             f"TPOT {tpot * 1e3:.2f} ms; one MoE layer:", "", "| our op | launches | our time (us) |", "|---|---:|---:|"]
    lines += [f"| {r.op} | {r.launches:g} | {r.time_s * 1e6:.1f} |" for r in ours.itertuples()]
    lines += [f"| sum | {ours.launches.sum():g} | {ours.time_s.sum() * 1e6:.1f} |", "", "| measured kernel (tables) | time (us) |",
              "|---|---:|"]
    lines += [f"| {k} | {v * 1e6:.1f} |" for k, v in measured_kernels(a.batch).items()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(main())
