"""The held-back closed loop of a paged-KV engine (`roofline.block_queue`): hand arithmetic and invariants."""

import math

import numpy as np
import pytest

import roofline as rl
from calibrate import corpus as C
from roofline import block_queue as BQ
from roofline.errors import SpecError

TURBOMIND = rl.Deployment(engine="lmdeploy-turbomind")


def test_docstring_example_preempts_the_latest_arrival_and_recomputes_it():
    # N = 3, S = O = 100, 128-token blocks, a pool of 3 (module docstring, worked by hand there)
    sc = BQ.schedule(3, 1, 100, 100, pool_blocks=3, block_tokens=128, budget_tokens=1000)
    assert list(sc.first_step) == [1, 1, 1]
    assert sc.prefill_tokens[0] == 300 and sc.prefill_prompts[0] == 3
    assert sc.preemptions == 1
    # step 29 (index 28): contexts reach 128, request 1 takes request 3's block, request 2 waits: one decodes
    assert sc.decode_rows[27] == 3 and sc.decode_rows[28] == 1
    assert sc.token_steps[0][-1] == 100  # 1 + 99 decode steps
    assert sc.token_steps[1][-1] == 172  # 28 tokens by step 28, waits 29-100, 72 more in 101-172
    assert sc.prefill_tokens[172] == 128  # step 173: request 3 recomputes 100 + 28 tokens
    assert sc.steps == 244 and sc.token_steps[2][-1] == 244  # then 71 decode steps
    assert all(len(t) == 99 for t in sc.token_steps)  # every request gets its O = 100 tokens


def test_everything_fits_is_one_batch():
    # 4 requests of 100 + 20 tokens, 1 block each, pool of 10: one prefill step of 400 tokens, then 19 decode steps
    sc = BQ.schedule(4, 1, 100, 20, pool_blocks=10, block_tokens=128, budget_tokens=4096)
    assert sc.steps == 20 and sc.preemptions == 0
    assert list(sc.prefill_tokens[:1]) == [400] and np.all(sc.decode_rows[1:] == 4)


def test_rounds_follow_one_after_the_other():
    # 1 client, 2 rounds of 10 + 5 tokens: steps 1-5 the first request, steps 6-10 the second (arrived for step 6)
    sc = BQ.schedule(1, 2, 10, 5, pool_blocks=1, block_tokens=16, budget_tokens=64)
    assert sc.steps == 10 and list(sc.arrival_step) == [1, 6] and list(sc.first_step) == [1, 6]


def test_budget_chunks_prompts():
    # 3 prompts of 2,048 with a budget of 4,104 tokens: 4,104 in step 1 (2 prompts + 8 tokens of the third)
    sc = BQ.schedule(3, 1, 2048, 4, pool_blocks=100, block_tokens=128, budget_tokens=4104)
    assert list(sc.first_step) == [1, 1, 2]
    assert sc.prefill_tokens[0] == 4104 and sc.prefill_tokens[1] == 2048 - 8 and sc.decode_rows[1] == 2


def test_turbomind_pool_of_llama2_7b_on_a100_by_hand():
    # 0.5 x 80 GiB (85,899,345,920 B) / (128 tokens x 2 x 32 layers x 32 heads x 128 x 2 B = 67,108,864 B) = 640 blocks
    assert BQ.kv_pool_blocks("llama-2-7b", "a100-sxm-80gb", TURBOMIND) == 640
    # a 2,048 + 2,048 request takes 4,096 / 128 = 32 blocks at its end, so neither the default pool (640 // 32 = 20)
    # nor the benchmark's configured 1,000 blocks (1000 // 32 = 31) hold a batch of 64 to the end; at admission each
    # takes ceil(2049 / 128) = 17 blocks, so 1000 // 17 = 58 (and 640 // 17 = 37) start in the first step
    for pool, first in ((1000, 58), (640, 37)):
        sc = BQ.schedule(64, 1, 2048, 2048, pool_blocks=pool, block_tokens=128, budget_tokens=64 * 2048)
        assert int((sc.first_step == 1).sum()) == first and sc.preemptions > 0


def test_pool_needs_an_engine_that_sizes_it():
    with pytest.raises(SpecError, match="kv_blocks"):
        BQ.kv_pool_blocks("llama-2-7b", "a100-sxm-80gb", rl.Deployment(engine="vllm"))
    with pytest.raises(SpecError, match="pool_blocks"):
        BQ.schedule(1, 1, 2048, 2048, pool_blocks=10, block_tokens=128, budget_tokens=4104)


def test_a_batch_that_fits_runs_as_the_static_batch():
    # Llama-2-7B, 16 x (2,048 + 2,048) fits the pool: the run's output rate and token gap agree with `predict`'s
    # static batch within 2% (the first tokens differ: the engine prefills two prompts a step, each its own TTFT)
    p = rl.predict("llama-2-7b", "a100-sxm-80gb", rl.Workload(batch_size=16, prompt_tokens=2048, output_tokens=2048), TURBOMIND)
    q = BQ.run("llama-2-7b", "a100-sxm-80gb", 16, 1, 2048, 2048, TURBOMIND)
    assert p.fits and q.schedule.preemptions == 0
    assert q.output_tokens_per_s == pytest.approx(16 * 2048 / p.e2e_latency_s, rel=0.02)
    assert float(np.median(q.itl_s)) == pytest.approx(p.tpot_s, rel=0.02)


def test_held_back_static_row_is_predicted_while_predict_says_it_does_not_fit():
    rows = {r.id: r for r in C.load_corpus() if r.source == "lmdeploy-a100-fp16"}
    row = rows["lmdeploy-a100-fp16-59"]  # Llama-2-7B, 64 x (2,048 + 2,048), FTL mean
    p = rl.predict(row.model, row.gpu, rl.Workload(batch_size=64, prompt_tokens=2048, output_tokens=2048), C.deployment_of(row))
    assert not p.fits and "does NOT fit" in p.fit_message
    ttft = C.predict_row(row)
    assert math.isfinite(ttft) and ttft > 1.0  # rounds 2 and 3 wait for blocks


def test_requests_beyond_the_batch_state_wait_in_the_queue():
    # 2 clients, 1 request each of 10 + 3 tokens, the engine takes 1 request at a time: steps 1-3, then 4-6;
    # the second request arrived for step 1, so its first token comes 4 steps after its arrival
    sc = BQ.schedule(2, 1, 10, 3, pool_blocks=4, block_tokens=16, budget_tokens=64, max_requests=1)
    assert sc.steps == 6 and list(sc.arrival_step) == [1, 1] and list(sc.first_step) == [1, 4]
    with pytest.raises(SpecError, match="max_requests"):
        BQ.schedule(2, 1, 10, 3, pool_blocks=4, block_tokens=16, budget_tokens=64, max_requests=0)
