"""Serving-engine profiles (issue 12 item 3, item 5): every figure by hand from the profile's numbers."""

import math
import re
import subprocess
import sys

import numpy as np
import pytest

import roofline as rl
from roofline.engines import EngineProfile, engine_tables, list_engines, load_engine, nccl_allreduce, with_nccl_allreduce
from roofline.parallelism import (
    engine_limits,
    engine_memory_bytes,
    engine_step_tokens,
    kv_allocated_tokens,
    sequence_slot_bytes,
    step_workspace_bytes,
)
from roofline.serving import check_traffic, curves_for


def test_shipped_engines_load_with_a_source_for_every_figure():
    assert list_engines() == ["lmdeploy-turbomind", "sglang", "sglang-0.4.0", "trtllm", "trtllm-cpp", "trtllm-cpp-0.5",
                              "trtllm-cpp-0.7", "trtllm-eager", "vllm", "vllm-v0-mla"]
    for i in list_engines():
        e = load_engine(i)
        # trtllm-cpp: TensorRT-LLM's older runtime, trtllm-eager: its first PyTorch backend without CUDA graphs,
        # vllm-v0-mla: vLLM's V0 engine on an MLA model, sglang-0.4.0: SGLang's December 2024 release; each timed with
        # its framework's kernel tables; LMDeploy has none collected (framework null: the device's default tables)
        assert e.framework == (None if i == "lmdeploy-turbomind" else i.split("-")[0])
        assert all(e.sources[k] for k in ("step_overhead_s", "max_num_seqs", "gpu_memory_fraction"))


def test_an_engine_without_a_source_is_refused():
    data = load_engine("vllm").model_dump()
    del data["sources"]["max_num_seqs"]
    with pytest.raises(Exception, match="sources: no source for max_num_seqs"):
        EngineProfile.model_validate(data)


def test_unknown_engine_is_one_line_naming_the_field():
    with pytest.raises(Exception, match="engine: unknown engine 'tgi'; choose one of lmdeploy-turbomind, sglang, sglang-0.4.0, trtllm, "
                                         "trtllm-cpp, trtllm-cpp-0.5, trtllm-cpp-0.7, trtllm-eager, vllm, vllm-v0-mla"):
        rl.Deployment(engine="tgi")


def test_vllm_limits_follow_its_device_rule():
    # vLLM's serve defaults: 1,024 sequences / 8,192 tokens per step on GPUs with >= 70 GiB that are not an A100,
    # 256 / 2,048 elsewhere (vllm/engine/arg_utils.py get_batch_defaults)
    e = load_engine("vllm")
    assert e.limits(rl.load_hardware("h100-sxm")) == (1024, 8192)  # 85.5 GB, Hopper
    assert e.limits(rl.load_hardware("a100-sxm-80gb")) == (256, 2048)  # 80 GB but an A100 (Ampere)
    assert e.limits(rl.load_hardware("l4")) == (256, 2048)  # 24 GB


def test_step_overhead_adds_to_every_step_by_hand():
    # Llama-3.1-8B on one H100, batch 4, 1,000-token prompts, 101 output tokens.
    # vLLM: h(B) = 160 us + B · 21 us = 160 + 84 = 244 us per step; the prompts are 4 · 1,000 = 4,000 tokens,
    # one step of the 8,192-token budget: TTFT gains 1 · 244 us, every decode step (TPOT) 244 us,
    # e2e gains 244 us + 100 · 244 us = 24.644 ms.
    wl = rl.Workload(batch_size=4, prompt_tokens=1000, output_tokens=101)
    bare = rl.predict("llama-3.1-8b", "h100-sxm", wl, rl.Deployment(engine=None))
    vllm = rl.predict("llama-3.1-8b", "h100-sxm", wl, rl.Deployment(engine="vllm"))
    h = 160e-6 + 4 * 21e-6
    assert vllm.ttft_s - bare.ttft_s == pytest.approx(h, rel=1e-9)
    assert vllm.tpot_s - bare.tpot_s == pytest.approx(h, rel=1e-9)
    assert vllm.e2e_latency_s - bare.e2e_latency_s == pytest.approx(h + 100 * h, rel=1e-9)
    # a static batch over the budget takes several steps: 16 · 1,000 = 16,000 tokens = ceil(16,000 / 8,192) = 2 steps
    wl16 = wl.model_copy(update={"batch_size": 16})
    d16 = (rl.predict("llama-3.1-8b", "h100-sxm", wl16, rl.Deployment(engine="vllm")).ttft_s
           - rl.predict("llama-3.1-8b", "h100-sxm", wl16, rl.Deployment(engine=None)).ttft_s)
    assert d16 == pytest.approx(2 * (160e-6 + 16 * 21e-6), rel=1e-9)
    # the overlap schedulers (SGLang, TensorRT-LLM) hide the CPU time: same times as the bare roofline on the same
    # kernel tables (SGLang's own on an H100: calibrate/public/h100-sxm-sglang.json)
    sg = rl.predict("llama-3.1-8b", "h100-sxm", wl, rl.Deployment(engine="sglang"))
    bare_sg = rl.predict("llama-3.1-8b", rl.load_hardware("h100-sxm", framework="sglang"), wl, rl.Deployment(engine=None))
    assert sg.ttft_s == pytest.approx(bare_sg.ttft_s, rel=1e-12) and sg.tpot_s == pytest.approx(bare_sg.tpot_s, rel=1e-12)


def test_memory_is_the_engine_share_and_its_largest_step():
    # Llama-3.1-70B, bf16, tp 4 on H100 SXM (85,520,809,984 B), vLLM: 0.9 of it = 76,968,728,985.6 B usable;
    # the workspace is that of one 8,192-token step, whatever the batch; the rest is KV for 2,048 + 256 tokens.
    m, hw = rl.load_model("llama-3.1-70b"), rl.load_hardware("h100-sxm")
    dep = rl.Deployment(tp=4, engine="vllm")
    p = rl.predict(m, hw, rl.Workload(batch_size=8, prompt_tokens=2048, output_tokens=256), dep)
    assert p.memory_available_bytes_per_gpu == pytest.approx(0.9 * 85_520_809_984)
    rd = dep.resolved(m)
    ws = float(step_workspace_bytes(m, rd, 4, 8192))
    # per layer the largest activation footprint of an 8,192-token pass is the two fused residual-add + norm
    # kernels: each reads x and the residual and writes both, 4 tensors of 8,192 tokens x 8,192 hidden x 2 bytes:
    # 2 · 4 · 8,192 · 8,192 · 2 = 1,073,741,824 bytes (the MLP's up projection writes 8,192 · 2 · 28,672 / 4 · 2 = 235 MB)
    assert ws == 2 * 4 * 8192 * 8192 * 2
    assert p.activation_workspace_bytes == pytest.approx(ws)
    kv_seq = p.kv_bytes_per_token * (2048 + 256)  # exact allocation: prompt + output tokens of KV per sequence
    free = 0.9 * 85_520_809_984 - p.weight_bytes - p.runtime_reserve_bytes - ws
    assert p.max_batch_size_fits == math.floor(free / kv_seq)
    # the planner's steady state sizes the batch the same way: one answer (issue 12 item 5)
    cv = curves_for(m, hw, dep, check_traffic(m, 1.0, 2048, 256, None), None)
    assert cv.max_batch_size_fits(cv.state(np.array([1.0])))[0] == p.max_batch_size_fits


def test_tensorrt_llm_sizes_its_kv_pool_from_the_memory_left_free():
    # TensorRT-LLM's free_gpu_memory_fraction f is a share of the memory still free once the weights, the runtime
    # reserve and the profiled workspace F are in place (docs/source/reference/memory.md): KV pool = f · (M - F), so the
    # engine uses F + f · (M - F) where vLLM's device share uses f · M. Llama-3.1-70B, bf16, tp 4 on H100 SXM
    # (M = 85,520,809,984 B), 2,048 + 256 tokens a sequence, f = 0.9 for both engines.
    m, hw, M = rl.load_model("llama-3.1-70b"), rl.load_hardware("h100-sxm"), 85_520_809_984
    wl = rl.Workload(batch_size=8, prompt_tokens=2048, output_tokens=256)
    dep = rl.Deployment(tp=4, engine="trtllm")
    p = rl.predict(m, hw, wl, dep)
    ws = float(step_workspace_bytes(m, dep.resolved(m), 4, 8192))  # TensorRT-LLM's max_num_tokens 8,192 step
    fixed = p.weight_bytes + p.runtime_reserve_bytes + ws
    assert p.memory_available_bytes_per_gpu == pytest.approx(fixed + 0.9 * (M - fixed))
    kv_seq = p.kv_bytes_per_token * (2048 + 256)
    assert p.max_batch_size_fits == math.floor(0.9 * (M - fixed) / kv_seq)
    # against vLLM's share of the device (same f, same budget step): the KV pool is larger by (1 - f) · F
    v = rl.predict(m, hw, wl, rl.Deployment(tp=4, engine="vllm"))
    assert v.max_batch_size_fits == math.floor((0.9 * M - fixed) / kv_seq)
    assert p.max_batch_size_fits > v.max_batch_size_fits
    # the steady state sizes the batch the same way
    cv = curves_for(m, hw, dep, check_traffic(m, 1.0, 2048, 256, None), None)
    assert cv.max_batch_size_fits(cv.state(np.array([1.0])))[0] == p.max_batch_size_fits


def test_an_engine_that_does_not_chunk_profiles_its_longest_prompt():
    # TensorRT-LLM runs a whole prompt in one step (no chunked prefill), so a 20,000-token prompt is a 20,000-token
    # step over its 8,192-token budget and the workspace it keeps free is that pass's; vLLM chunks it to 8,192.
    # Llama-3.1-8B, bf16, H200; every activation is linear in the tokens, so the two workspaces are 20,000 : 8,192.
    m, hw = rl.load_model("llama-3.1-8b"), rl.load_hardware("h200")
    wl = rl.Workload(batch_size=4, prompt_tokens=20_000, output_tokens=2_000)
    trt, vllm = rl.Deployment(engine="trtllm"), rl.Deployment(engine="vllm")
    assert engine_step_tokens(8192, 20_000, chunked=False) == 20_000
    assert engine_step_tokens(8192, 20_000, chunked=True) == 8192
    assert engine_step_tokens(8192, 2_048, chunked=False) == 8192
    ws_prompt = float(step_workspace_bytes(m, trt.resolved(m), 1, 20_000))
    ws_budget = float(step_workspace_bytes(m, vllm.resolved(m), 1, 8192))
    assert ws_prompt / ws_budget == pytest.approx(20_000 / 8192)  # every activation is linear in the tokens
    assert rl.predict(m, hw, wl, trt).activation_workspace_bytes == pytest.approx(ws_prompt)
    assert rl.predict(m, hw, wl, vllm).activation_workspace_bytes == pytest.approx(ws_budget)
    # the steady state keeps the same workspace and sizes the same batch as predict
    cv = curves_for(m, hw, trt, check_traffic(m, None, 20_000, 2_000, None), None)
    assert cv.workspace[0, 0] == pytest.approx(ws_prompt)
    assert cv.max_batch_size_fits(cv.state(np.array([0.01])))[0] == rl.predict(m, hw, wl, trt).max_batch_size_fits


def test_running_sequences_cap_the_batch():
    # Llama-3.1-8B on an H200 (141 GB) fits far more than 1,024 short sequences: vLLM caps it at 1,024
    p = rl.predict("llama-3.1-8b", "h200", rl.Workload(batch_size=1, prompt_tokens=128, output_tokens=128), rl.Deployment())
    assert p.max_batch_size_fits == 1024
    bare = rl.predict("llama-3.1-8b", "h200", rl.Workload(batch_size=1, prompt_tokens=128, output_tokens=128),
                      rl.Deployment(engine=None))
    assert bare.max_batch_size_fits > 1024


def test_serving_ttft_carries_tokenization_and_engine_budget_chunks():
    # vLLM on an H100: 10 us per prompt token of tokenization on the request path, chunked prefill mixed with decode
    # in its 8,192-token budget. TTFT mean = residual + M/G/1 wait + prefill service + request overhead + 1,000 · 10 us;
    # the request overhead is 0 for vLLM (no public measurement) and 5.63 ms for SGLang (its mock-model TTFT).
    m, hw = rl.load_model("llama-3.1-8b"), rl.load_hardware("h100-sxm")
    for engine, chunk, overhead in (("vllm", 8192, 0.0), ("sglang", None, 5.63e-3)):
        dep = rl.Deployment(engine=engine)
        cv = curves_for(m, hw, dep, check_traffic(m, 2.0, 1000, 200, None), None)
        st = cv.state(np.array([2.0]))
        assert st.ttft_mean_s[0] == pytest.approx(
            st.residual_s[0] + st.wait_mean_s[0] + st.service_mean_s[0] + overhead + 1000 * 10e-6, rel=1e-12)
        # SGLang chunks prefill too, but its default scheduler runs a prefill step alone (mixed_prefill_decode false):
        # prefill passes preempt decode, the whole-prompt model
        assert rl.steady_state(m, hw, 2.0, 1000, 200, dep).chunk_tokens == chunk
    # TensorRT-LLM does not chunk by default: whole-prompt prefill, as without an engine
    assert rl.steady_state(m, hw, 2.0, 1000, 200, rl.Deployment(engine="trtllm")).chunk_tokens is None


def test_sglang_request_overhead_reproduces_its_mock_model_ttft():
    # tt-inference-server issue 3560: SGLang serving a mock model whose every forward waits 1/380 s and computes
    # nothing; one 128-token chat request at a time, median TTFT 9.54 ms. The first token comes out of the one prefill
    # forward, so TTFT = request overhead + tokenizing 128 tokens + 2.632 ms: 5.63 + 1.28 + 2.632 = 9.542 ms.
    e = load_engine("sglang")
    assert e.request_s(128) + 1 / 380 == pytest.approx(9.54e-3, abs=0.01e-3)
    assert e.request_s(0) == pytest.approx(5.63e-3)  # the fixed part: the prompt's tokenization comes on top
    # engines without a component-level measurement carry none (TTFT: tokenization, residual, queue and steps only)
    assert [load_engine(i).request_overhead_s for i in ("vllm", "trtllm")] == [0.0, 0.0]


# GPT-2 (124M) as openai-community/gpt2's config.json gives it: n_layer 12, n_embd 768, n_head 12, n_inner null
# (4 x 768), gelu_new, vocab 50,257, n_positions 1,024, tied wte / lm_head, LayerNorm with biases, biased c_attn,
# c_proj and MLP, learned positions; fp16 as the Triton CLI builds its TensorRT-LLM engine.
GPT2 = dict(name="GPT-2 (124M)", source="https://huggingface.co/openai-community/gpt2/blob/main/config.json",
            num_layers=12, hidden_size=768, num_attention_heads=12, num_kv_heads=12, head_dim=64, intermediate_size=3072,
            ffn_kind="plain", activation="gelu_new", vocab_size=50257, tied_embeddings=True, max_context=1024,
            attention="mha", norm="layernorm", norm_bias=True, qkv_bias=True, o_bias=True, mlp_bias=True,
            native_dtype="fp16", position_embedding="learned")


def launch_overhead_s(row, per_launch_s):
    """The overhead a decode op pays at `per_launch_s` a launch: GEMMs and attention of a calibrated file in an eager
    step none (`per_launch_s` 0 given), every other kernel its launch, except the small memory-bound kernels timed by
    the file's elementwise line (kinds elementwise and gather), which cost max(launch, line) per kernel: overhead
    launches · max(0, per_launch - memory_s / launches) (`CalibratedCurves._elementwise_rates`)."""
    if row.kind in ("elementwise", "gather"):
        return row.launches * max(0.0, per_launch_s - row.memory_s / row.launches)
    return row.launches * per_launch_s


# T5-small as google-t5/t5-small's config.json gives it (d_model 512, d_ff 2048 ReLU, d_kv 64, 8 heads, 6 encoder and 6
# decoder layers, vocab 32,128, T5LayerNorm: RMS without bias, relative position bias, tied embeddings), as a stack of
# this roofline's decoder-only layers: the encoder is its prefill pass less the lm_head, the decoder step its decode
# step plus 6 cross-attention blocks priced as its self-attention sub-block; fp16 as the tensorrtllm_backend guide builds it.
T5_SMALL = dict(name="T5-small (6-layer stack)", source="https://huggingface.co/google-t5/t5-small/blob/main/config.json",
                num_layers=6, hidden_size=512, num_attention_heads=8, num_kv_heads=8, head_dim=64, intermediate_size=2048,
                ffn_kind="plain", activation="relu", vocab_size=32128, tied_embeddings=True, max_context=512,
                attention="mha", norm="rmsnorm", native_dtype="fp16", position_embedding="none")


def test_trtllm_cpp_overheads_reproduce_the_triton_ensemble_t5_run_they_come_from():
    # tensorrtllm_backend docs/encoder_decoder.md (v0.14.0), GenAI-Perf against the inflight_batcher_llm ensemble,
    # streaming, T5-small, 200-token prompts, at most 100 output tokens, one request at a time, A100-80GB, TRT-LLM 0.12:
    # TTFT 4.69 ms, request latency 75.32 ms; the same prompts unstreamed give 95.83 output tokens. One generated token
    # per executor step: ITL = (75.32 - 4.69) / (95.83 - 1) = 0.745 ms. (GenAI-Perf's own 0.63 ms counts the streamed
    # text re-tokenized, 116.5 tokens of at most 100 generated: below the 70.63 / 99 = 0.713 ms floor of a real step.)
    ttft_s, latency_s, tokens = 4.69e-3, 75.32e-3, 95.83
    itl_s = (latency_s - ttft_s) / (tokens - 1)
    assert itl_s == pytest.approx(0.7448e-3, abs=0.0001e-3) and 0.63e-3 < (latency_s - ttft_s) / 99
    ops = rl.predict(rl.ModelSpec(**T5_SMALL), "a100-sxm-80gb", rl.Workload(batch_size=1, prompt_tokens=200, output_tokens=100),
                     rl.Deployment(engine="trtllm-cpp")).operators
    pre, dec = (ops[ops.phase == ph].set_index("op").time_s for ph in ("prefill", "decode"))
    encoder_s = pre.sum() - pre["lm_head"]                                                         # 0.416 - 0.027 ms
    cross_s = dec["norms"] / 2 + dec["qkv_proj"] + dec["attention"] + dec["o_proj"]                 # 6 cross-attention blocks
    decoder_s = dec.sum() + cross_s                                                                # 0.315 + 0.169 ms
    cross_kv_s = pre["qkv_proj"]                                                                   # K/V of 200 encoder states
    # fp16 GEMMs at the A100 tables' bf16 rows (calibration.gemm_table_for)
    assert (encoder_s, decoder_s, cross_kv_s) == pytest.approx((0.389e-3, 0.484e-3, 0.051e-3), abs=0.002e-3)
    # h(1) = 0.745 - 0.484 = 0.260 -> 0.26 ms; request overhead = 4.69 - 0.745 - 200 x 0.010 - 0.389 - 0.051 = 1.505 ms
    cpp = load_engine("trtllm-cpp")
    assert cpp.step_s(1) == pytest.approx(itl_s - decoder_s, abs=0.01e-3) and cpp.step_s(8) == cpp.step_s(1)
    assert cpp.request_s(200) == pytest.approx(1.51e-3 + 200 * 1.0e-5)  # 3.51 ms with the prompt's tokenization
    # put back together, the pieces give the run again: decode step = forward + h(1), idle-server TTFT = request +
    # encoder + cross K/V + one decoder step
    assert decoder_s + cpp.step_s(1) == pytest.approx(itl_s, abs=0.01e-3)
    assert cpp.request_s(200) + encoder_s + cross_kv_s + decoder_s + cpp.step_s(1) == pytest.approx(ttft_s, abs=0.01e-3)


def test_gpt2_through_the_triton_cli_bls_is_slower_than_the_executor_alone():
    # GenAI-Perf tutorial (triton-inference-server/perf_analyzer genai-perf/docs/tutorial.md): GPT-2 through the Triton
    # CLI's BLS model, 200-token prompts, streaming, one request at a time: TTFT 13.68 ms, ITL 1.86 ms. The executor alone
    # (the profile, from the T5 ensemble run above) decodes GPT-2 on the calibrated H100 SXM in 0.590 + 0.26 = 0.85 ms a
    # token, so the BLS's per-token Python loop, not the executor, sets its 1.86 ms; and its TTFT holds about 9 ms more
    # than the ensemble's request path: 13.68 - (1.51 + 2.00 + 0.715 + 0.26) = 9.19 ms of BLS time before the first token.
    cpp = load_engine("trtllm-cpp")
    wl = rl.Workload(batch_size=1, prompt_tokens=200, output_tokens=100)
    p = rl.predict(rl.ModelSpec(**GPT2), "h100-sxm", wl, rl.Deployment(engine="trtllm-cpp"))
    assert p.tpot_s == pytest.approx(0.590e-3 + 0.26e-3, abs=0.01e-3)  # GPT-2 is fp16: the H100 tables' bf16 rows
    assert 1.86e-3 - p.tpot_s == pytest.approx(1.01e-3, abs=0.02e-3)
    assert p.ttft_s == pytest.approx(0.715e-3 + 0.26e-3, abs=0.01e-3)  # offline: one prefill step, no request overhead
    assert 13.68e-3 - (cpp.request_s(200) + p.ttft_s) == pytest.approx(9.19e-3, abs=0.02e-3)


def test_engine_limits_and_memory_helpers():
    m, hws = rl.load_model("llama-3.1-8b"), [rl.load_hardware("h100-sxm"), rl.load_hardware("a100-sxm-80gb")]
    rd = rl.Deployment().resolved(m)
    seqs, tokens = engine_limits(rd, hws)
    assert list(seqs) == [1024, 256] and list(tokens) == [8192, 2048]
    assert engine_memory_bytes(rd, 100.0) == pytest.approx(90.0)
    # a device share ignores what is loaded; TensorRT-LLM's share of the free memory: F + f · (M - F) = 40 + 0.9 · 60
    assert engine_memory_bytes(rd, 100.0, 40.0) == pytest.approx(90.0)
    trt = rl.Deployment(engine="trtllm").resolved(m)
    assert engine_memory_bytes(trt, 100.0, 40.0) == pytest.approx(94.0)
    assert engine_memory_bytes(trt, 100.0) == pytest.approx(90.0)  # F unknown (0): the device share
    assert engine_limits(rl.Deployment(engine=None).resolved(m), hws) is None
    assert engine_memory_bytes(rl.Deployment(engine=None).resolved(m), 100.0) == 100.0


def test_cli_engines_and_engine_flag():
    out = subprocess.run([sys.executable, "-m", "roofline", "engines"], capture_output=True, text=True, check=True).stdout
    assert "vllm (default)" in out and "sglang" in out and "trtllm" in out
    # the memory column names what the share is of (each profile's memory_fraction_of)
    row = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert "90.0% of the GPU" in row["vllm"] and "90.0% of free (KV)" in row["trtllm"]
    assert "50.0% of the GPU as KV" in row["lmdeploy-turbomind"] and "88.0% (by tp) of the GPU" in row["sglang-0.4.0"]
    # the last column but one: how often a GQA layer's decode reads each KV head (each profile's grouped_decode_kernel);
    # the last: the all-reduce (custom_allreduce and custom_allreduce_max_bytes)
    last = {k: [c.strip() for c in re.split(r"\s{2,}", v.strip())][-2:] for k, v in row.items()}
    tables = "custom, table's switch"
    assert last["trtllm-cpp"] == ["once", tables] and last["trtllm-cpp-0.5"] == ["x group", tables]
    assert last["trtllm-cpp-0.7"] == ["once at head 128/256, group 8; else x group", tables]
    assert last["lmdeploy-turbomind"][1] == "NCCL" and last["vllm"][1] == tables
    assert last["sglang-0.4.0"][1] == last["vllm-v0-mla"][1] == "custom < 8 MiB, then NCCL"
    # a profile's name does not repeat its versions, which the column prints beside it
    assert "TensorRT-LLM (C++ runtime, no XQA) 0.5 - 0.6 (" in row["trtllm-cpp-0.5"]
    bad = subprocess.run([sys.executable, "-m", "roofline", "predict", "--model", "llama-3.1-8b", "--hardware", "h100-sxm",
                          "--engine", "tgi"], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("roofline: error: engine: unknown engine 'tgi'")


def test_decode_beyond_the_captured_graphs_launches_eagerly():
    # vLLM captures CUDA graphs for decode batches up to 512. On the calibrated H100 (public kernel tables attached
    # by default) a graph-replayed decode step pays the profile's 0.5 us per launch on every kernel; at 513
    # sequences the step runs eagerly: the measured kernels (GEMMs, attention: their tables hold their fixed time)
    # pay nothing more, every other kernel the eager 4 us launch; the elementwise line's kernels at most their launch
    # (`launch_overhead_s`: none in a graph, where the line's t0 holds the replay's cost).
    hw = rl.load_hardware("h100-sxm")
    assert hw.mode == "calibrated" and load_engine("vllm").cuda_graph_max_batch == 512
    graph_s, eager_s = hw.efficiency.kernel_overhead_graph_s, hw.efficiency.kernel_overhead_s
    for b, per_launch in ((512, lambda kind: graph_s), (513, lambda kind: 0.0 if kind in ("gemm", "attention") else eager_s)):
        p = rl.predict("llama-3.1-8b", hw, rl.Workload(batch_size=b, prompt_tokens=128, output_tokens=16))
        ops = p.operators
        dec = ops[(ops.phase == "decode") & (ops.launches > 0)]
        for row in dec.itertuples():
            assert row.overhead_s == pytest.approx(launch_overhead_s(row, per_launch(row.kind)), abs=1e-15), (b, row.op)
        small = dec[dec.kind.isin(["elementwise", "gather"])]
        assert len(small) and (small.time_s >= small.launches * per_launch("elementwise") - 1e-15).all()


def test_the_engine_picks_its_frameworks_kernel_tables():
    # H100 ships vLLM tables (h100-sxm.json, the default) and TensorRT-LLM tables (h100-sxm-trtllm.json): a
    # TensorRT-LLM deployment is timed with the latter in predict, sweep, steady_state and plan; SGLang with its own
    # (h100-sxm-sglang.json); a device without an SGLang file (A100) keeps the default; analytical stays analytical.
    wl = rl.Workload(batch_size=8, prompt_tokens=1024, output_tokens=128)
    trt = rl.predict("llama-3.1-8b", "h100-sxm", wl, rl.Deployment(engine="trtllm"))
    assert trt.calibration_id == "public-h100_sxm-trtllm-1.3.0rc20"
    assert rl.predict("llama-3.1-8b", "h100-sxm", wl, rl.Deployment(engine="vllm")).calibration_id == "public-h100_sxm-vllm-0.24.0"
    assert rl.predict("llama-3.1-8b", "h100-sxm", wl, rl.Deployment(engine="sglang")).calibration_id == "public-h100_sxm-sglang-0.5.14"
    assert rl.predict("llama-3.1-8b", "a100-sxm-80gb", wl, rl.Deployment(engine="sglang")).calibration_id == "public-a100_sxm-vllm-0.14.0"
    analytical = rl.load_hardware("h100-sxm", analytical=True)
    assert rl.predict("llama-3.1-8b", analytical, wl, rl.Deployment(engine="trtllm")).mode == "analytical"
    df = rl.sweep("llama-3.1-8b", "h100-sxm", batch_size=8, prompt_tokens=1024, output_tokens=128,
                  deployment=rl.Deployment(engine="trtllm"))
    assert df.ttft_s.iloc[0] == pytest.approx(trt.ttft_s, rel=1e-9) and df.tpot_s.iloc[0] == pytest.approx(trt.tpot_s, rel=1e-9)


@pytest.mark.parametrize("model, hw, batch", [("llama-3.1-70b", "h100-sxm", 8), ("llama-3.1-70b", "h100-sxm", 24),
                                               ("llama-3.1-405b", "l4", 1), ("llama-3.1-8b", "a100-sxm-80gb", 64)])
def test_predict_fitting_skips_only_tps_whose_weights_alone_overflow(model, hw, batch):
    # predict_fitting skips a tp without timing it when weights + reserve already exceed the engine's memory share;
    # it must still pick what predicting every tp in turn picks (the first that fits, else the largest tp)
    wl = rl.Workload(batch_size=batch, prompt_tokens=2048, output_tokens=256)
    got = rl.predict_fitting(model, hw, wl)
    every = [rl.predict(model, hw, wl, rl.Deployment(tp=tp)) for tp in rl.valid_tps(rl.load_model(model), rl.load_hardware(hw))]
    want = next((p for p in every if p.fits), every[-1])
    assert got.model_dump_json() == want.model_dump_json()  # NaN costs of a deployment that does not fit compare equal as text


def test_tensorrt_llm_cpp_runtime_differs_only_in_overlap_cuda_graphs_and_measured_overheads():
    # TensorRT-LLM before 0.17 (TensorRT engines, C++ runtime / executor): no overlap scheduler, CUDA graphs off by
    # default, the host time per step and per Triton request measured with T5-small through the Triton ensemble (the
    # test above), and no attention
    # data parallelism (enable_attention_dp is a PyTorch-backend option, so its per-rank batch limit does not arise), and
    # the executor's buffers per sequence slot (the test below; the PyTorch backend's sampler is not audited: none);
    # every other figure is the PyTorch-backend profile's
    cpp, new = load_engine("trtllm-cpp"), load_engine("trtllm")
    assert (cpp.overlap_scheduler, cpp.cuda_graph_max_batch, cpp.seqs_per_attention_rank) == (False, 0, False)
    assert (new.overlap_scheduler, new.cuda_graph_max_batch, new.seqs_per_attention_rank) == (True, 128, True)
    assert (cpp.step_overhead_s, cpp.request_overhead_s) == (0.26e-3, 1.51e-3)
    assert (new.step_overhead_s, new.request_overhead_s) == (0.0, 0.0)
    assert (cpp.slot_bytes_per_vocab_entry, cpp.slot_bytes_per_context_token, cpp.slot_bytes_fixed) == (20, 40, 65_536)
    assert (new.slot_bytes_per_vocab_entry, new.slot_bytes_per_context_token, new.slot_bytes_fixed) == (0, 0, 0)
    skip = {"name", "versions", "sources", "notes", "overlap_scheduler", "cuda_graph_max_batch", "step_overhead_s",
            "request_overhead_s", "seqs_per_attention_rank", "slot_bytes_per_vocab_entry", "slot_bytes_per_context_token",
            "slot_bytes_fixed"}
    a, b = cpp.model_dump(exclude=skip), new.model_dump(exclude=skip)
    assert a == b
    assert "0.16" in cpp.versions


def test_tensorrt_llm_cpp_decode_launches_every_kernel_eagerly():
    # with no captured graph (cuda_graph_max_batch 0) even a batch-1 decode step on the calibrated H100 pays the eager
    # 4 us launch on every kernel the tables do not time (GEMMs and attention hold their fixed time), where the
    # PyTorch-backend profile replays the step from a graph at 0.5 us per launch
    hw = rl.load_hardware("h100-sxm")
    graph_s, eager_s = hw.efficiency.kernel_overhead_graph_s, hw.efficiency.kernel_overhead_s
    wl = rl.Workload(batch_size=1, prompt_tokens=128, output_tokens=16)
    for engine, per_launch in (("trtllm", lambda kind: graph_s),
                               ("trtllm-cpp", lambda kind: 0.0 if kind in ("gemm", "attention") else eager_s)):
        ops = rl.predict("llama-3.1-8b", hw, wl, rl.Deployment(engine=engine)).operators
        dec = ops[(ops.phase == "decode") & (ops.launches > 0)]
        assert len(dec)
        for row in dec.itertuples():
            assert row.overhead_s == pytest.approx(launch_overhead_s(row, per_launch(row.kind)), abs=1e-15), (engine, row.op)


def test_vllm_v0_on_an_mla_model_prefills_whole_prompts_alone():
    # vLLM V0 (0.7.x) serving an MLA model: chunked prefill forced off (vllm PR 12642; V0 defaults), so the V0
    # scheduler runs prefill-first: a step prefills whole prompts up to max(max_model_len, 2048) = 32768 tokens at
    # --max-model-len 32768, or decodes, never both; V0's limits (256 sequences, graphs up to 256) on every GPU; the
    # custom all-reduce up to 8 MiB (0.7.3 CustomAllreduce max_size 8192 * 1024, then pynccl). Everything else is the V1
    # profile's.
    v0, v1 = load_engine("vllm-v0-mla"), load_engine("vllm")
    assert (v0.chunked_prefill, v0.mixed_prefill_decode, v0.multi_prompt_prefill) == (False, False, True)
    assert (v0.max_num_batched_tokens, v0.max_num_seqs, v0.cuda_graph_max_batch, v0.large_gpu) == (max(32768, 2048), 256, 256, None)
    assert v0.limits(rl.load_hardware("h200")) == (256, 32768)
    skip = {"name", "versions", "sources", "notes", "chunked_prefill", "mixed_prefill_decode", "max_num_batched_tokens",
            "max_num_seqs", "cuda_graph_max_batch", "large_gpu", "engine_base", "custom_allreduce_max_bytes"}
    assert (v0.custom_allreduce_max_bytes, v1.custom_allreduce_max_bytes) == (8192 * 1024, None)
    assert v0.model_dump(exclude=skip) == v1.model_dump(exclude=skip)
    assert (v0.engine_base, v1.engine_base) == ("vllm", None)
    assert "0.7" in v0.versions


def test_tensorrt_llm_eager_differs_from_the_pytorch_backend_only_in_cuda_graphs():
    # TensorRT-LLM 0.17 served by trtllm-serve --backend pytorch: PyTorchConfig(enable_overlap_scheduler=True) with
    # use_cuda_graph at its False default, so no captured batch; every other figure is the `trtllm` profile's
    eager, new = load_engine("trtllm-eager"), load_engine("trtllm")
    assert (eager.overlap_scheduler, eager.cuda_graph_max_batch) == (True, 0)
    # (attention data parallelism's per-rank batch limit is sourced for the current PyTorch backend's recipes only, so
    # the 0.17 profile leaves it at the default)
    assert eager.seqs_per_attention_rank is False
    skip = {"name", "versions", "sources", "notes", "cuda_graph_max_batch", "seqs_per_attention_rank", "engine_base"}
    assert eager.model_dump(exclude=skip) == new.model_dump(exclude=skip)
    assert (eager.engine_base, new.engine_base) == ("trtllm", None)
    assert "0.17" in eager.versions
    # so a batch-4 DeepSeek-V3 decode step on 8 H200s launches eagerly: 4 us on every launch the kernel tables do not
    # time (the norms and activations here: at least 4 us a kernel, `launch_overhead_s`), where `trtllm` replays them
    # from a graph (their line's t0 holds the replay's 0.5 us); the decode operators
    # are those of trtllm-cpp, the other eager TensorRT-LLM profile (the two differ only in overlap scheduling,
    # which a static batch does not see)
    hw = rl.load_hardware("h200")
    graph_s, eager_s = hw.efficiency.kernel_overhead_graph_s, hw.efficiency.kernel_overhead_s
    wl = rl.Workload(batch_size=4, prompt_tokens=3200, output_tokens=800)
    dec = {}
    for e in ("trtllm", "trtllm-eager", "trtllm-cpp"):
        ops = rl.predict("deepseek-v3", hw, wl, rl.Deployment(tp=8, activation_dtype="fp8", engine=e)).operators
        dec[e] = ops[ops.phase == "decode"].reset_index(drop=True)
    for e, per_launch in (("trtllm", graph_s), ("trtllm-eager", eager_s)):
        plain = dec[e][dec[e].op.isin(["norms", "mlp_act", "shared_act", "final_norm"])]
        assert len(plain) == 5  # the norms of the dense and MoE groups, the final norm, the dense and shared activations
        for row in plain.itertuples():
            assert row.overhead_s == pytest.approx(launch_overhead_s(row, per_launch), abs=1e-15), (e, row.op)
    assert dec["trtllm-eager"].time_s.tolist() == pytest.approx(dec["trtllm-cpp"].time_s.tolist(), rel=1e-12)
    assert dec["trtllm-eager"].time_s.sum() > dec["trtllm"].time_s.sum()


def test_lmdeploy_turbomind_profile_holds_its_sourced_defaults():
    # LMDeploy 0.1.0 - 0.2.1 (TurboMind), each figure from the source its `sources:` names: max_batch_size 64
    # (TurbomindModelConfig), tokens per iteration = max_context_token_num = session_len = Llama-2's 4,096 + 8,
    # cache_block_seq_len 128, cache_max_entry_count 0.5 of the whole device for the KV blocks (BlockManager:
    # total * ratio / block_size), no CUDA graphs, NCCL all-reduce (ftNcclAllReduceSum), one C++ loop (no overlap),
    # decode and prefill in one forwardUnified pass, the last prompt of a step split at the budget
    e = load_engine("lmdeploy-turbomind")
    assert e.framework is None and "0.1.0" in e.versions and "0.2.1" in e.versions
    assert (e.max_num_seqs, e.max_num_batched_tokens, e.kv_block_tokens) == (64, 4096 + 8, 128)
    assert (e.gpu_memory_fraction, e.memory_fraction_of) == (0.5, "device_for_kv")
    assert (e.cuda_graph_max_batch, e.custom_allreduce, e.overlap_scheduler) == (0, False, False)
    assert (e.chunked_prefill, e.multi_prompt_prefill, e.mixed_prefill_decode) == (True, True, True)
    assert (e.step_overhead_s, e.step_overhead_per_sequence_s, e.request_overhead_s) == (0.0, 0.0, 0.0)
    assert e.large_gpu is None and e.limits(rl.load_hardware("a100-sxm-80gb")) == (64, 4104)
    assert nccl_allreduce(e)


def test_lmdeploy_turbomind_kv_pool_is_half_the_device_on_top_of_the_weights():
    # TurboMind 0.1 - 0.2.1 sizes its KV blocks as cache_max_entry_count x the device's total memory, after the
    # weights are loaded: the KV pool is f · M whatever F is, so the engine uses F + f · M (at most M).
    # Llama-2-7B, fp16, one A100 SXM 80GB (M = 85,899,345,920 B), 2,048 + 2,000 tokens a sequence:
    # KV per token 2 · 32 layers · 4,096 · 2 B = 524,288 B, per sequence 4,048 · 524,288 = 2,122,317,824 B;
    # the pool 0.5 · M = 42,949,672,960 B holds floor(20.24) = 20 sequences (the cap, 64, is not reached)
    m, hw, M = rl.load_model("llama-2-7b"), rl.load_hardware("a100-sxm-80gb"), 85_899_345_920
    wl = rl.Workload(batch_size=16, prompt_tokens=2048, output_tokens=2000)
    p = rl.predict(m, hw, wl, rl.Deployment(engine="lmdeploy-turbomind"))
    assert p.kv_bytes_per_token == 524_288
    fixed = p.weight_bytes + p.runtime_reserve_bytes + p.activation_workspace_bytes
    assert p.activation_workspace_bytes == pytest.approx(float(step_workspace_bytes(m, rl.Deployment(engine="lmdeploy-turbomind").resolved(m), 1, 4104)))
    assert p.memory_available_bytes_per_gpu == pytest.approx(fixed + 0.5 * M)
    assert p.max_batch_size_fits == 20 == math.floor(0.5 * M / (4048 * 524_288))
    assert p.fits  # 16 · 2,122,317,824 = 33.96e9 B of KV <= 42.95e9 B
    assert not rl.predict(m, hw, wl.model_copy(update={"batch_size": 21}), rl.Deployment(engine="lmdeploy-turbomind")).fits
    # the helper: F + f · M, capped at the device: 40 + 0.5 · 100 = 90; 60 + 50 = 110 -> 100
    rd = rl.Deployment(engine="lmdeploy-turbomind").resolved(m)
    assert engine_memory_bytes(rd, 100.0, 40.0) == pytest.approx(90.0)
    assert engine_memory_bytes(rd, 100.0, 60.0) == pytest.approx(100.0)
    # in 128-token blocks (cache_block_seq_len) a 4,048-token sequence takes ceil(4,048 / 128) = 32 blocks = 4,096 slots
    paged = rl.Deployment(engine="lmdeploy-turbomind", kv_allocation="paged", kv_block_tokens=load_engine("lmdeploy-turbomind").kv_block_tokens)
    assert kv_allocated_tokens(paged, 4048, m.max_context) == 32 * 128 == 4096
    pp = rl.predict(m, hw, wl, paged)
    assert pp.max_batch_size_fits == math.floor(0.5 * M / (4096 * 524_288)) == 20


def test_lmdeploy_turbomind_launches_every_decode_kernel_eagerly_on_the_default_tables():
    # no CUDA graphs in TurboMind 0.1 - 0.2: even a batch-1 decode step on the calibrated A100 launches every kernel
    # eagerly, 4 us a launch (kernel_overhead_s), where the bare roofline replays it from a graph at 0.5 us
    # (kernel_overhead_graph_s); the measured ops' table times (attention, and the GEMMs: Llama-2's fp16 takes the bf16
    # table, `calibration.gemm_table_for`) already hold their eager launch (0 more).
    # Llama-2-7B: 32 layers, so 32 launches of each projection and 64 of the norms. No LMDeploy tables exist, so the
    # device's default tables time it (the bare roofline's calibration) and its all-reduce is NCCL's.
    hw = rl.load_hardware("a100-sxm-80gb")
    eager_s, graph_s = hw.efficiency.kernel_overhead_s, hw.efficiency.kernel_overhead_graph_s
    assert (eager_s, graph_s) == (4e-6, 5e-7)
    wl = rl.Workload(batch_size=1, prompt_tokens=128, output_tokens=16)
    p = rl.predict("llama-2-7b", hw, wl, rl.Deployment(engine="lmdeploy-turbomind"))
    bare = rl.predict("llama-2-7b", hw, wl, rl.Deployment(engine=None))
    assert p.calibration_id == bare.calibration_id
    assert engine_tables(hw, "lmdeploy-turbomind") is with_nccl_allreduce(hw)
    got, graphed = ({r.op: r for r in q.operators.itertuples() if r.phase == "decode" and r.launches > 0} for q in (p, bare))
    assert got["qkv_proj"].launches == 32 and got["norms"].launches == 64
    for op, row in got.items():
        measured = op == "attention" or row.kind == "gemm"
        assert row.overhead_s == pytest.approx(0.0 if measured else row.launches * eager_s, abs=1e-15), op
        assert graphed[op].overhead_s == pytest.approx(graphed[op].launches * graph_s, abs=1e-15), op


def test_tensorrt_llm_caches_every_layer_whole_without_a_window_list():
    # TensorRT-LLM's KvCacheConfig.max_attention_window defaults to None: one window, the whole sequence, for every
    # layer; gpt-oss's window of 128 reaches only the attention kernel (hardware_profiles/engines/trtllm.yaml sources).
    # gpt-oss-120b, BF16 KV, 2,048 B per token and layer (2 x 8 KV heads x 64 x 2 B), 18 full + 18 window-128 layers,
    # 1,000 + 1,000 tokens: vLLM keeps 2,048 x (18 x 2,000 + 18 x 128) = 78,446,592 B a sequence,
    # TensorRT-LLM 2,048 x 36 x 2,000 = 147,456,000 B.
    m, hw = rl.load_model("gpt-oss-120b"), rl.load_hardware("h200")
    wl = rl.Workload(batch_size=4, prompt_tokens=1000, output_tokens=1000)
    assert [i for i in list_engines() if not load_engine(i).windowed_kv_cache] == ["trtllm", "trtllm-cpp", "trtllm-cpp-0.5",
                                                                                  "trtllm-cpp-0.7", "trtllm-eager"]
    trt = rl.predict(m, hw, wl, rl.Deployment(engine="trtllm"))
    vllm = rl.predict(m, hw, wl, rl.Deployment(engine="vllm"))
    assert vllm.kv_cache_bytes == 4 * 78_446_592
    assert trt.kv_cache_bytes == 4 * 147_456_000
    # the kernel still attends to the window: the decode step reads the same KV bytes under both engines
    kv_read = lambda p: p.operators.query("phase == 'decode' and op == 'attention'")["kv_read_bytes"].sum()  # noqa: E731
    assert kv_read(trt) == kv_read(vllm) > 0
    # a model without sliding layers is cached the same under both
    llama = rl.load_model("llama-3.1-8b")
    assert rl.predict(llama, hw, wl, rl.Deployment(engine="trtllm")).kv_cache_bytes == \
        rl.predict(llama, hw, wl, rl.Deployment(engine="vllm")).kv_cache_bytes


def test_an_unwindowed_kv_cache_needs_a_source():
    data = load_engine("vllm").model_dump()
    data["windowed_kv_cache"] = False
    with pytest.raises(Exception, match="sources: no source for windowed_kv_cache"):
        EngineProfile.model_validate(data)


def test_sglang_0_4_0_sets_its_memory_share_by_tensor_parallel_size():
    # SGLang 0.4.0 / 0.4.0.post1 server_args.py: mem_fraction_static 0.88 at tp 1, 0.87 at tp >= 2, 0.85 at tp >= 4,
    # 0.81 at tp >= 8, 0.79 at tp >= 16; every other engine keeps one share at every tp
    e = load_engine("sglang-0.4.0")
    assert [e.memory_fraction(tp) for tp in (1, 2, 3, 4, 6, 8, 12, 16, 32)] == [0.88, 0.87, 0.87, 0.85, 0.85, 0.81, 0.81, 0.79, 0.79]
    assert all(load_engine("sglang").memory_fraction(tp) == 0.88 for tp in (1, 4, 8))
    # otherwise the 0.4 - 0.5 profile's figures, but for the share, the admission by future KV and the all-reduce's
    # switch to NCCL at 8 MiB (its versions)
    assert (e.admission, load_engine("sglang").admission) == ("future_kv", "slots")
    skip = ("versions", "sources", "notes", "gpu_memory_fraction_by_tp", "admission", "engine_base", "custom_allreduce_max_bytes")
    same = {k: v for k, v in load_engine("sglang").model_dump().items() if k not in skip}
    assert {k: v for k, v in e.model_dump().items() if k not in skip} == same
    # the engine's part of an H200 (150,754,820,096 B): 0.85 of it at tp 4 = 128,141,597,081.6 B, 0.81 at tp 8 =
    # 122,111,404,277.76 B; Llama-3.3-70B at tp 4 in predict's memory figure
    h200 = rl.load_hardware("h200")
    for tp, share in ((4, 0.85), (8, 0.81)):
        rd = rl.Deployment(tp=tp, engine="sglang-0.4.0").resolved(rl.load_model("llama-3.3-70b"))
        assert engine_memory_bytes(rd, h200.memory_bytes) == pytest.approx(share * 150_754_820_096, rel=1e-12)
    p = rl.predict("llama-3.3-70b", "h200", rl.Workload(batch_size=8, prompt_tokens=512, output_tokens=512),
                   rl.Deployment(tp=4, engine="sglang-0.4.0"))
    assert p.memory_available_bytes_per_gpu == pytest.approx(128_141_597_081.6, rel=1e-12)
    from roofline.views import math_lines
    assert "of 128.1 GB available (the SGLang engine's 85.0% of 150.8 GB)" in [
        line for line in math_lines(p, rl.load_model("llama-3.3-70b"), h200) if line.startswith("Memory per GPU")][0]
    # a sweep over tp takes each tp's share, not the base deployment's: 0.85 at tp 4, 0.81 at tp 8
    df = rl.sweep("llama-3.3-70b", "h200", batch_size=8, prompt_tokens=512, output_tokens=512, tp=[4, 8],
                  deployment=rl.Deployment(engine="sglang-0.4.0"))
    got = dict(zip(df["tp"], df["memory_available_bytes_per_gpu"]))
    assert got[4] == pytest.approx(0.85 * 150_754_820_096, rel=1e-12)
    assert got[8] == pytest.approx(0.81 * 150_754_820_096, rel=1e-12)


def test_a_memory_share_by_tp_needs_a_source_and_valid_shares():
    data = load_engine("sglang-0.4.0").model_dump()
    del data["sources"]["gpu_memory_fraction_by_tp"]
    with pytest.raises(Exception, match="sources: no source for gpu_memory_fraction_by_tp"):
        EngineProfile.model_validate(data)
    data = load_engine("sglang-0.4.0").model_dump()
    data["gpu_memory_fraction_by_tp"] = {4: 1.5}
    with pytest.raises(Exception, match=r"gpu_memory_fraction_by_tp: needs tp sizes >= 1 and shares in \(0, 1\], got \{4: 1.5\}"):
        EngineProfile.model_validate(data)


# ------------------------------------------------------------ TensorRT-LLM C++ executor: buffers per sequence slot
def _qwen25_coder_05b():
    # Qwen/Qwen2.5-Coder-0.5B-Instruct config.json: 24 layers of 896, 14 heads of 64, 2 KV heads, SwiGLU 4,864,
    # vocab 151,936, tied embeddings, 32,768 positions (trtllm-build's default max_seq_len)
    return rl.ModelSpec(name="Qwen2.5-Coder 0.5B", source="https://huggingface.co/Qwen/Qwen2.5-Coder-0.5B-Instruct", num_layers=24,
                        hidden_size=896, num_attention_heads=14, num_kv_heads=2, head_dim=64, intermediate_size=4864,
                        ffn_kind="gated", activation="silu", vocab_size=151_936, tied_embeddings=True, max_context=32_768,
                        attention="gqa", qkv_bias=True, native_dtype="bf16", norm="rmsnorm", position_embedding="rope")


def test_an_admission_by_future_kv_needs_a_source():
    data = load_engine("sglang-0.4.0").model_dump()
    del data["sources"]["admission"]
    with pytest.raises(Exception, match="sources: no source for admission"):
        EngineProfile(**data)
    data["admission"] = "slots"  # the default rule needs none
    assert EngineProfile(**data).admission == "slots"


def test_tensorrt_llm_cpp_slot_buffers_reproduce_the_logged_runtime_and_decoder_allocations():
    # NVIDIA/TensorRT-LLM issue 1188 (2024-11-21): Qwen2.5-Coder-0.5B built with trtllm-build defaults (max_batch_size
    # 2,048, max_seq_len 32,768) logs 'Allocated 2.66 GB GPU memory for runtime buffers' and '5.76 GB ... for decoder'
    # (GiB). Per slot, from the executor's sources (hardware_profiles/engines/trtllm-cpp.yaml):
    #   runtime buffers: fp32 logits 4 B x vocab + (cache indirection 3 x 4 + log-probs 2 x 4 + output ids 4) B x length
    #   decoder: (embedding bias, decoder logits, penalty counts, top-k log-probs) 4 x 4 B x vocab
    #            + (ids, parent ids, log-probs, tiled log-probs) 4 x 4 B x length + 65,536 B top-k scratch
    m = _qwen25_coder_05b()
    runtime = 2048 * (4 * 151_936 + 24 * 32_768)            # 2,855,272,448 B
    decoder = 2048 * (16 * 151_936 + 16 * 32_768 + 65_536)  # 6,186,598,400 B
    assert runtime == 2_855_272_448 and decoder == 6_186_598_400
    assert round(runtime / 2**30, 2) == 2.66 and round(decoder / 2**30, 2) == 5.76  # as logged
    rd = rl.Deployment(engine="trtllm-cpp").resolved(m)
    assert float(sequence_slot_bytes(m, rd, 1, 2048, 32_768)) == runtime + decoder
    # the per-slot figure of the profile: 20 B per vocabulary entry, 40 B per position, 65,536 B
    assert load_engine("trtllm-cpp").slot_bytes(128_256, 4096) == 20 * 128_256 + 40 * 4096 + 65_536 == 2_794_496


def test_tensorrt_llm_cpp_kv_pool_comes_after_its_slot_buffers():
    # Llama-3.1-70B bf16, tp 2 on H100 SXM (M = 85,520,809,984 B), 2,048 + 2,048 tokens, trtllm-cpp (the executor of
    # trtllm-bench 0.14: max_batch_size 2,048 slots, engine built for 4,096 tokens, free_gpu_memory_fraction 0.9):
    #   weights W = 70,555,025,408 B (half of 70.55e9 bf16 parameters, norms on both GPUs)
    #   workspace of the 8,192-token step ws = 1,073,741,824 B; runtime reserve R = 2 GiB = 2,147,483,648 B
    #   slot buffers S = 2,048 x (20 x 128,256 + 40 x 4,096 + 65,536) = 2,048 x 2,794,496 = 5,723,127,808 B
    #   free = M - W - ws - R - S = 6,021,431,296 B; KV pool = 0.9 x free = 5,419,288,166 B
    #   KV per sequence = 80 layers x 4 KV heads x 128 x 2 (K, V) x 2 B x 4,096 = 671,088,640 B
    #   sequences = floor(5,419,288,166 / 671,088,640) = floor(8.08) = 8 (15 without S: floor(0.9 x 11,744,559,104 / ...))
    m, hw = rl.load_model("llama-3.1-70b"), rl.load_hardware("h100-sxm")
    dep = rl.Deployment(tp=2, engine="trtllm-cpp")
    rd = dep.resolved(m)
    assert hw.memory_bytes == 85_520_809_984
    assert float(step_workspace_bytes(m, rd, 2, 8192)) == 1_073_741_824
    assert float(sequence_slot_bytes(m, rd, 2, 2048, 4096)) == 5_723_127_808
    free = 85_520_809_984 - 70_555_025_408 - 1_073_741_824 - 2_147_483_648 - 5_723_127_808
    assert free == 6_021_431_296
    assert math.floor(0.9 * free / 671_088_640) == 8
    assert math.floor(0.9 * (free + 5_723_127_808) / 671_088_640) == 15
    sp = rl.steady_state(m, hw, 0.01, 2048, 2048, dep)
    assert sp.max_batch_size_fits == 8
    # a static batch (`predict`: GptSession sized for the batch, whose buffers were not audited) keeps none
    p = rl.predict(m, hw, rl.Workload(batch_size=8, prompt_tokens=2048, output_tokens=2048), dep)
    assert p.activation_workspace_bytes == 1_073_741_824 and p.max_batch_size_fits == 15


def test_slot_buffers_are_the_tensorrt_llm_cpp_profiles_alone():
    m = rl.load_model("llama-3.1-70b")
    for engine in list_engines():
        e = load_engine(engine)
        per_slot = e.slot_bytes(128_256, 4096)
        assert per_slot == (2_794_496 if engine.startswith("trtllm-cpp") else 0)
        assert float(sequence_slot_bytes(m, rl.Deployment(tp=2, engine=engine).resolved(m), 2, 2048, 4096)) == 2048 * per_slot
    assert sequence_slot_bytes(m, rl.Deployment(tp=2, engine=None).resolved(m), 2, 2048, 4096) == 0.0
    # the vocabulary is padded to the world size: 32,001 entries on tp 2 count 32,002
    mixtral = rl.load_model("mixtral-8x7b").model_copy(update={"vocab_size": 32_001})
    rd = rl.Deployment(tp=2, engine="trtllm-cpp").resolved(mixtral)
    assert float(sequence_slot_bytes(mixtral, rd, 2, 1, 0)) == 20 * 32_002 + 65_536


def test_a_slot_figure_without_a_source_is_refused():
    data = load_engine("trtllm-cpp").model_dump()
    del data["sources"]["slot_bytes_per_vocab_entry"]
    with pytest.raises(Exception, match="sources: no source for slot_bytes_per_vocab_entry"):
        EngineProfile.model_validate(data)


def test_every_list_of_engines_in_the_help_and_readme_is_the_shipped_set():
    # the profiles are named by hand in three places beside hardware_profiles/engines/: --engine's help
    # (cli/args.ENGINE_HELP), README's command synopsis (predict, plan) and README's Layout line for engines.py
    import re
    from pathlib import Path

    from roofline.cli.args import ENGINE_HELP

    shipped = set(list_engines())
    assert set(re.search(r"`roofline engines`: ([^;]+);", ENGINE_HELP).group(1).split(", ")) == shipped
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    synopses = re.findall(r"--engine ([a-z0-9.|-]+)\]", readme)
    assert len(synopses) == 2
    for s in synopses:
        assert set(s.split("|")) == shipped | {"none"}
    layout = re.search(r"engines\.py +serving-engine profiles \(hardware_profiles/engines/: ([^)]+)\)", readme).group(1)
    assert set(layout.split(", ")) == shipped
