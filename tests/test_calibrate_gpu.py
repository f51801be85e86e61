"""GPU-only checks of calibration and validation; each skips with its reason where there is no CUDA device."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)")


@needs_cuda
def test_nvml_reports_the_device_and_clocks():
    from calibrate import device as D

    info = D.detect()
    assert info.kind == "cuda" and info.memory_bytes > 0
    assert not info.nvml_note, info.nvml_note
    assert info.clocks_hz.get("sm_max_hz", 0) > 0 and info.driver_version
    assert D.throttle_reasons() is not None


@needs_cuda
def test_quick_calibration_on_the_gpu_measures_every_kernel(tmp_path):
    from calibrate.runner import run_calibration
    import json

    run = run_calibration(out=tmp_path, profile="h100-sxm", quick=True)
    assert not run.failed, run.failed
    for name in ("bandwidth_copy", "gemm_bf16", "attention_prefill", "attention_decode", "launch_overhead"):
        rows = json.loads((tmp_path / "bench" / f"{name}.json").read_text())["rows"]
        assert any(r["status"] == "ok" for r in rows), name
    launch = json.loads((tmp_path / "bench" / "launch_overhead.json").read_text())["rows"]
    graph = [r for r in launch if r["mode"] == "cuda_graph"][0]
    assert graph["status"] == "ok" and graph["per_kernel_s"] < [r for r in launch if r["mode"] == "eager"][0]["per_kernel_s"]
    fp8 = json.loads((tmp_path / "bench" / "gemm_fp8.json").read_text())["rows"]
    cc = torch.cuda.get_device_capability()
    assert (fp8[0]["status"] == "skipped") == (cc < (8, 9))


@needs_cuda
def test_copy_bandwidth_is_near_the_datasheet_on_a_known_gpu():
    from calibrate import device as D
    from calibrate import microbench as MB
    from calibrate.timing import Timer
    import roofline as rl

    pid, _ = D.match_profile(D.detect())
    if pid is None:
        pytest.skip("this GPU matches no shipped profile")
    grid = MB.Grid.full()
    grid = MB.Grid(**{**grid.__dict__, "bandwidth_bytes": (2**30,)})
    ctx = MB.Context(torch=torch, device="cuda", timer=Timer("cuda", l2_bytes=torch.cuda.get_device_properties(0).L2_cache_size), grid=grid)
    row = next(MB.bandwidth_copy(ctx))
    frac = row["bytes_per_s"] / rl.load_hardware(pid).memory_bandwidth_bytes_per_s
    assert 0.6 < frac <= 1.0, frac


@needs_cuda
def test_validation_runs_a_truncated_model_on_the_gpu(tmp_path):
    from calibrate.validate import run_validation

    run = run_validation(["llama-3.2-1b"], ["own", "hf"], [1], [128], [8], out=tmp_path, profile="h100-sxm", layers=2, reps=1)
    assert run.ran == 2 and (tmp_path / "validation.md").exists()


@needs_cuda
def test_reference_engine_decode_from_cuda_graphs_equals_eager_decode():
    """The graph-replayed decode computes the same tokens as the same steps run eagerly; prefill ran a fused kernel."""
    from calibrate import fast
    from calibrate.validate import load_spec

    spec = load_spec("llama-3.2-1b", layers=2)
    model = fast.build(spec, "bf16", "cuda")
    assert model.prefill_attention in ("FLASH_ATTENTION", "CUDNN_ATTENTION", "EFFICIENT_ATTENTION")
    if torch.cuda.get_device_capability() >= (8, 0):
        assert model.prefill_attention == "FLASH_ATTENTION"
    prompt = torch.randint(0, spec.vocab_size, (2, 40), device="cuda")
    tokens = {}
    for graphs in (True, False):
        r = fast.Runner(model, graphs=graphs, kv_bucket_tokens=16)
        seen = []
        r.allocate(2, 60)
        r.prepare(40, 20)
        r.prefill(prompt)
        for _ in range(19):
            r.step()
            seen.append(r.tok.clone())
        tokens[graphs] = torch.cat(seen, dim=1)
        assert r.decode_mode == ("cuda_graph" if graphs else "eager (cuda)")
    assert torch.equal(tokens[True], tokens[False])
    assert len(fast.Runner(model, kv_bucket_tokens=16)._graphs) == 0  # graphs belong to their runner


@needs_cuda
def test_reference_engine_fp8_matches_the_textbook_pass_on_the_gpu():
    from calibrate import fast
    from calibrate.validate import load_spec

    sup = fast.precision_support("fp8", "cuda")
    if not sup.ok:
        pytest.skip(sup.reason)
    spec = load_spec("llama-3.2-1b", layers=2)
    model = fast.build(spec, "fp8", "cuda")
    tokens = torch.randint(0, spec.vocab_size, (2, 64), device="cuda")
    fast.calibrate_fp8(model, tokens)
    model.allocate_cache(2, 64)
    with torch.inference_mode():
        got = model.prefill(tokens).float()
        ref = fast.plain_logits(model, tokens)[:, -1]
    err = float((got - ref).norm() / ref.norm())
    assert 1e-3 < err < 0.25, err


@needs_cuda
def test_validation_of_the_reference_engine_runs_both_precisions(tmp_path):
    from calibrate.validate import run_validation

    run = run_validation(["llama-3.2-1b"], ["fast"], [1], [128], [8], out=tmp_path, profile="h100-sxm", layers=2, reps=1,
                         precisions=["bf16", "fp8"])
    assert {r["dtype"] for r in run.rows} == {"bf16", "fp8"} or torch.cuda.get_device_capability() < (8, 9)
    assert all(r["decode_mode"] == "cuda_graph" and r["engine_decode_kernels_per_layer"] > 0 for r in run.rows)
