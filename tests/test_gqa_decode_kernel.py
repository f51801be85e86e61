"""The GQA decode kernel an engine runs: TensorRT-LLM 0.5 - 0.6 decode every GQA layer with masked MHA (one thread block
per (sequence, query head), each reading its KV head), 0.7 - 0.9 serve head 128 / 256 at 8 query heads per KV head with
XQA (each KV head read once for its group) and the other layouts with masked MHA (`engines.GroupedDecodeKernel`,
`ops.decode_kv_reads`)."""

import numpy as np
import pytest

import roofline as rl
from roofline.engines import EngineProfile, GroupedDecodeKernel, load_engine
from roofline.ops import decode_kv_reads, forward_ops
from roofline.roofline import Ceilings, OpTable, time_ops

# A small GQA stack: 2 layers, 8 query heads and 2 KV heads of 64 (group 4), fp16 KV.
SMALL_GQA = dict(name="small GQA", source="https://example.org/small-gqa", num_layers=2, hidden_size=512, num_attention_heads=8, num_kv_heads=2,
                 head_dim=64, intermediate_size=1024, ffn_kind="gated", activation="silu", vocab_size=1000,
                 tied_embeddings=False, max_context=4096, attention="gqa", norm="rmsnorm", native_dtype="fp16")


def _attention(model, engine, batch, new, past, tp=1):
    rd = rl.Deployment(tp=tp, engine=engine).resolved(model)
    return next(o for o in forward_ops(model, rd, batch, new, past, tp) if o.name == "attention")


def test_xqa_layouts_by_release():
    # 0.9.0's DecoderXQARunner::shouldUse: head 128 or 256 and 8 query heads per KV head; 0.5 - 0.6 have no XQA
    xqa, none = load_engine("trtllm-cpp-0.7").grouped_decode_kernel, load_engine("trtllm-cpp-0.5").grouped_decode_kernel
    assert xqa == GroupedDecodeKernel(head_dims=(128, 256), group_sizes=(8,))
    assert none == GroupedDecodeKernel()
    assert xqa.reads_per_kv_head(128, 8) == 1.0        # Llama-2-70B: XQA
    assert xqa.reads_per_kv_head(64, 29) == 29.0       # Falcon-180B: 232 / 8 query heads of 64, masked MHA
    assert xqa.reads_per_kv_head(128, 4) == 4.0        # Mistral-7B, Mixtral-8x7B: 32 / 8, masked MHA
    assert xqa.reads_per_kv_head(128, 1) == 1.0        # MHA: one query head per KV head, nothing repeated
    assert none.reads_per_kv_head(128, 8) == 8.0       # Llama-2-70B before XQA
    np.testing.assert_array_equal(xqa.reads_per_kv_head(128, np.array([1.0, 4.0, 8.0])), [1.0, 4.0, 1.0])
    # the engines that do not name a GQA kernel read each KV head once whatever the layout
    for engine in ("trtllm-cpp", "trtllm", "vllm", "sglang"):
        assert load_engine(engine).grouped_decode_kernel is None


def test_decode_kv_bytes_per_step_under_each_kernel():
    m = rl.ModelSpec(**SMALL_GQA)
    # one token's KV per layer: 2 (K, V) x 2 KV heads x 64 x 2 B = 512 B. A decode step of 4 sequences at context 100
    # (past 99 + the new token) reads 4 x 100 x 512 = 204,800 B per layer, 409,600 B over the 2 layers, from HBM under
    # every kernel. Masked MHA's 4 query-head blocks of a KV head stream it 4 times through L2: 4 x 409,600 =
    # 1,638,400 B of L2 reads; a kernel that reads each KV head once (`trtllm-cpp`, XQA) has none beside its HBM bytes.
    once = _attention(m, "trtllm-cpp", 4, 1, 99)
    assert once.kv_read_bytes == 2 * 4 * 100 * 512 == 409_600
    assert once.l2_read_bytes == 0.0
    for engine in ("trtllm-cpp-0.5", "trtllm-cpp-0.7"):  # head 64 has no XQA kernel in either
        mmha = _attention(m, engine, 4, 1, 99)
        assert mmha.kv_read_bytes == 409_600
        assert mmha.l2_read_bytes == 4 * 409_600 == 1_638_400
        # its work units are the (sequence, query head) blocks: 2 layers x 4 sequences x 8 query heads = 64
        assert mmha.kv_units == 2 * 4 * 8 == 64
        assert mmha.flops == once.flops  # the same dot products; only the KV stream repeats
        assert mmha.kv_write_bytes == once.kv_write_bytes == 2 * 4 * 512  # the new token's K and V, written once
    assert once.kv_units == 2 * 4 * 2 == 16


def test_xqa_reads_each_kv_head_once_and_prefill_is_untouched():
    # head 128, 16 query heads over 2 KV heads: group 8, XQA's layout in 0.7 - 0.9, masked MHA in 0.5 - 0.6.
    m = rl.ModelSpec(**{**SMALL_GQA, "hidden_size": 2048, "num_attention_heads": 16, "head_dim": 128})
    # 2 x 2 x 128 x 2 B = 1,024 B per token and layer; 3 sequences at context 50: 2 x 3 x 50 x 1,024 = 307,200 B
    xqa, mmha = _attention(m, "trtllm-cpp-0.7", 3, 1, 49), _attention(m, "trtllm-cpp-0.5", 3, 1, 49)
    assert xqa.kv_read_bytes == mmha.kv_read_bytes == 307_200
    assert xqa.l2_read_bytes == 0.0 and mmha.l2_read_bytes == 8 * 307_200
    # tp 2: 8 query heads and 1 KV head on a GPU, still group 8: 1 x 128 x 2 x 2 B = 512 B per token and layer
    assert _attention(m, "trtllm-cpp-0.5", 3, 1, 49, tp=2).l2_read_bytes == 8 * 2 * 3 * 50 * 512
    # a prefill pass runs the context kernel, which repeats nothing
    pre = _attention(m, "trtllm-cpp-0.5", 3, 64, 0)
    assert pre.kv_read_bytes == _attention(m, "trtllm-cpp", 3, 64, 0).kv_read_bytes and pre.l2_read_bytes == 0.0
    rd = rl.Deployment(engine="trtllm-cpp-0.5").resolved(m)
    np.testing.assert_array_equal(decode_kv_reads(m, rd, np.array([1, 64, 1])), [8.0, 1.0, 8.0])
    assert decode_kv_reads(m, rl.Deployment(engine=None).resolved(m), 1) == 1.0  # the bare roofline


def test_l2_reads_are_timed_at_the_measured_l2_rate():
    # the analytical H200 (9.8 TB/s L2-hit reads, 4.8 TB/s x 0.86 = 4.128 TB/s HBM): the attention op of a step of 64
    # sequences at context 4,096 under masked MHA, group 8 (the head-128 stack above at tp 1).
    m = rl.ModelSpec(**{**SMALL_GQA, "hidden_size": 2048, "num_attention_heads": 16, "head_dim": 128})
    hw = rl.load_hardware("h200", analytical=True)
    rd = rl.Deployment(engine="trtllm-cpp-0.5").resolved(m)
    ops = forward_ops(m, rd, 64, 1, 4095)
    table = OpTable.of(ops)
    timing = time_ops(table, Ceilings.of(hw, rd.compute_key), 1)
    i = table.names.index("attention")
    att = ops[i]
    # HBM: 2 layers x 64 x 4,096 x 1,024 B = 536,870,912 B of KV (+ the q, output and new K/V activations), ~130 us;
    # L2: 8 x 536,870,912 = 4,294,967,296 B at 9.8e12 B/s = 438.3 us of SM-side streaming, added to the compute term
    assert att.kv_read_bytes == 2 * 64 * 4096 * 1024 == 536_870_912
    assert att.l2_read_bytes == 8 * 536_870_912
    bare = time_ops(table, Ceilings.of(hw.model_copy(update={"l2_read_bytes_per_s": None}), rd.compute_key), 1)
    assert float(timing.compute_s[i]) == pytest.approx(float(bare.compute_s[i]) + 4_294_967_296 / 9.8e12)
    assert float(timing.memory_s[i]) == float(bare.memory_s[i]) == pytest.approx(float(att.bytes) / (4.8e12 * 0.86))
    assert float(timing.time_s[i]) == pytest.approx(float(timing.compute_s[i]) + float(timing.overhead_s[i]))  # L2-bound
    # no L2 figure on the device: the repeats cost nothing beyond the HBM bytes
    assert float(bare.time_s[i]) == pytest.approx(float(bare.memory_s[i]) + float(bare.overhead_s[i]))


def test_slower_decode_under_masked_mha_on_a_whole_prediction():
    # Llama-2-70B FP8 on one H200, 192 x (128 + 2,048): 0.5's masked MHA streams each KV head 8 times through L2, so
    # the run is slower than under 0.7 - 0.9's XQA (NVIDIA's XQA blog measured 1,227 against 2,941 tok/s/GPU here;
    # the L2 term alone gives less of the gap: see trtllm-cpp-0.5.yaml)
    wl = rl.Workload(batch_size=192, prompt_tokens=128, output_tokens=2048)
    tput = {}
    for engine in ("trtllm-cpp-0.5", "trtllm-cpp-0.7"):
        dep = rl.Deployment(weight_dtype="fp8", activation_dtype="fp8", kv_dtype="fp8", engine=engine)
        p = rl.predict("llama-2-70b", "h200", wl, dep)
        tput[engine] = 192 * 2048 / p.e2e_latency_s
    assert tput["trtllm-cpp-0.5"] < tput["trtllm-cpp-0.7"]


def test_a_grouped_decode_kernel_needs_a_source():
    data = load_engine("trtllm-cpp-0.7").model_dump()
    del data["sources"]["grouped_decode_kernel"]
    with pytest.raises(Exception, match="sources: no source for grouped_decode_kernel"):
        EngineProfile.model_validate(data)


def test_an_l2_rate_needs_a_source():
    hw = rl.load_hardware("h200", analytical=True).model_dump()
    del hw["sources"]["l2_read_bytes_per_s"]
    with pytest.raises(Exception, match="sources: no source for l2_read_bytes_per_s"):
        rl.HardwareProfile.model_validate(hw)


def test_the_worked_number_of_op_and_roofline_docstrings():
    # `ops.Op` / `roofline` docstrings: Llama-2-70B, FP8 KV, one sequence at context 2,048 under TensorRT-LLM 0.5
    # (masked MHA, group 64 / 8 = 8) on the analytical H200: KV from HBM 80 x 2,048 x 2 x 8 x 128 x 1 B =
    # 335,544,320 B; L2 reads 8 x that = 2,684,354,560 B, 2,684,354,560 / 9.8e12 = 273.9 us of compute against
    # 335,544,320 / (4.8e12 x 0.86) = 81.3 us of KV from HBM
    m, hw = rl.load_model("llama-2-70b"), rl.load_hardware("h200", analytical=True)
    rd = rl.Deployment(weight_dtype="fp8", activation_dtype="fp8", kv_dtype="fp8", engine="trtllm-cpp-0.5").resolved(m)
    ops = forward_ops(m, rd, 1, 1, 2047)
    att = next(o for o in ops if o.name == "attention")
    assert att.kv_read_bytes == 80 * 2048 * 2 * 8 * 128 * 1 == 335_544_320
    assert att.l2_read_bytes == 8 * 335_544_320 == 2_684_354_560
    table = OpTable.of(ops)
    i = table.names.index("attention")
    with_l2 = time_ops(table, Ceilings.of(hw, rd.compute_key), 1)
    bare = time_ops(table, Ceilings.of(hw.model_copy(update={"l2_read_bytes_per_s": None}), rd.compute_key), 1)
    assert float(with_l2.compute_s[i] - bare.compute_s[i]) == pytest.approx(2_684_354_560 / 9.8e12) == pytest.approx(273.9e-6, abs=0.1e-6)
    assert 335_544_320 / (4.8e12 * 0.86) == pytest.approx(81.3e-6, abs=0.1e-6)
    assert float(with_l2.compute_s[i]) > float(with_l2.memory_s[i])  # L2-bound


def test_the_h100_pcie_times_l2_reads_at_its_own_measured_rate():
    # gpu-benches gpu-l2-cache h100_pcie.txt: 6.83-6.98 TB/s for 10-33 MB data sets, 6.9e12 B/s taken. The same
    # masked-MHA step as above (64 sequences at context 4,096, group 8, 2 layers): 8 x 536,870,912 B from L2 at
    # 6.9e12 B/s = 622.4 us on the SMs, where the H200's 9.8e12 gives 438.3 us
    m = rl.ModelSpec(**{**SMALL_GQA, "hidden_size": 2048, "num_attention_heads": 16, "head_dim": 128})
    hw = rl.load_hardware("h100-pcie", analytical=True)
    assert hw.l2_read_bytes_per_s == 6.9e12
    rd = rl.Deployment(engine="trtllm-cpp-0.5").resolved(m)
    table = OpTable.of(forward_ops(m, rd, 64, 1, 4095))
    i = table.names.index("attention")
    with_l2 = time_ops(table, Ceilings.of(hw, rd.compute_key), 1)
    bare = time_ops(table, Ceilings.of(hw.model_copy(update={"l2_read_bytes_per_s": None}), rd.compute_key), 1)
    assert float(with_l2.compute_s[i] - bare.compute_s[i]) == pytest.approx(8 * 536_870_912 / 6.9e12)
    assert 8 * 536_870_912 / 6.9e12 == pytest.approx(622.4e-6, abs=0.1e-6)
