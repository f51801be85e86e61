"""`roofline validate`: run real transformers, measure TTFT, TPOT and throughput, compare with the predictions.

For each model x implementation x precision x batch x prompt x output length:

* implementations (`--impl`): `fast`, the fair reference engine (`fast.py`: static cache, GQA without
  copies, flash prefill, decode replayed from CUDA graphs, bf16 / fp8 / int8); `hf`, the "eager HF"
  reference (transformers, eager, bf16); `own`, the eager own Llama (bf16). Their errors are
  reported apart: only `fast` is the engine the roofline describes (`engine.ENGINES`).

* measured: one untimed warm-up generation, then `reps` timed ones (the median of each metric is
  kept). TTFT = prefill of batch x prompt tokens plus the argmax of the first token; each decode
  step (one token per sequence against the static KV cache) is timed separately; TPOT = their
  mean; throughput = batch · output / (TTFT + Σ steps). Wall clock after `torch.cuda.synchronize()`,
  so CPU launch overhead counts, as it does for a user.
* predicted: `roofline.predict` of the same (possibly truncated: `--layers N`) spec, workload and
  dtype, with the datasheet profile (`analytical`) and, given `--calibration`, the calibrated one;
  and `engine`: the calibrated prediction (datasheet without a calibration) with its launch
  overhead replaced by the measured engine's counted kernels x the measured per-kernel cost of how
  it launches them (`engine.adjust`). The prediction never sees a measured end-to-end time.
* a time budget (`deadline_s`, monotonic clock): a point whose estimated time (the datasheet
  prediction x the generations it runs, plus a build allowance) would pass it is skipped and noted.

Each run is written atomically to `runs/<key>.json` as soon as it finishes, so an interrupted
validation resumes where it stopped (or `--overwrite` redoes everything); the report
(validation.csv / .md / *.svg) is rebuilt from every finished run at the end.
"""

from __future__ import annotations

import statistics
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from roofline.errors import SpecError
from roofline.specs import ModelSpec

from . import device as D
from . import results as R
from .report import write_validation_report

TINY_LLAMA = {
    "name": "tiny-llama (test spec)", "source": "https://github.com/roofline/roofline/calibrate/validate.py",
    "num_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "num_kv_heads": 2, "head_dim": 16,
    "intermediate_size": 128, "ffn_kind": "gated", "activation": "silu", "vocab_size": 256, "tied_embeddings": False,
    "max_context": 4096, "attention": "gqa",
}


def load_spec(model_id: str, layers: int | None = None) -> ModelSpec:
    """A shipped id, a spec path, or `tiny-llama` (a 2-layer, 64-wide test spec); truncated to `layers`."""
    from roofline.registry import load_model

    spec = ModelSpec.model_validate(TINY_LLAMA) if model_id == "tiny-llama" else load_model(model_id)
    if layers is not None:
        if layers < 1:
            raise SpecError("layers", f"must be at least 1, got {layers}")
        if layers < spec.num_layers:
            spec = ModelSpec.model_validate({**spec.model_dump(), "num_layers": layers, "name": f"{spec.name} ({layers} of {spec.num_layers} layers)"})
    return spec


@dataclass
class ValidationRun:
    out: Path
    rows: list[dict] = field(default_factory=list)
    ran: int = 0
    reused: int = 0
    notes: list[str] = field(default_factory=list)
    paths: dict = field(default_factory=dict)

    def summary(self) -> str:
        from .report import error_summary

        lines = [f"validation in {self.out}: {self.ran} run(s) measured, {self.reused} reused"]
        for s in error_summary(self.rows):
            if s["runs"]:
                lines.append(f"  {s['impl']:<5} {s['dtype']:<5} {s['metric']:<10} {s['mode']:<10} median |error| {s['median_ape'] * 100:.1f}%, "
                             f"worst {s['worst_ape'] * 100:.1f}% over {s['runs']} run(s)")
        lines += [f"note: {n}" for n in self.notes]
        lines += [f"wrote {p}" for p in self.paths.values()]
        return "\n".join(lines)


def _generate(runner, torch, tokens, output: int, sync):
    """(ttft_s, [step_s]) of one generation of `output` tokens after a prompt."""
    b, s = tokens.shape
    runner.allocate_cache(b, s + output)
    with torch.inference_mode():
        sync()
        t0 = time.perf_counter()
        nxt = runner(tokens, 0).argmax(-1, keepdim=True)
        sync()
        ttft = time.perf_counter() - t0
        steps = []
        for i in range(output - 1):
            t0 = time.perf_counter()
            nxt = runner(nxt, s + i).argmax(-1, keepdim=True)
            sync()
            steps.append(time.perf_counter() - t0)
    return ttft, steps


def measure(runner, torch, device: str, vocab: int, batch: int, prompt: int, output: int, reps: int) -> dict:
    """Median TTFT, TPOT and throughput over `reps` timed generations after one warm-up."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    tokens = torch.randint(0, vocab, (batch, prompt), device=device)
    _generate(runner, torch, tokens, min(output, 3), sync)  # warm-up: kernels chosen, allocator primed
    ttfts, tpots, tputs = [], [], []
    for _ in range(reps):
        ttft, steps = _generate(runner, torch, tokens, output, sync)
        ttfts.append(ttft)
        tpots.append(statistics.mean(steps) if steps else None)
        tputs.append(batch * output / (ttft + sum(steps)))
    tp = [t for t in tpots if t is not None]
    return {"measured_ttft_s": statistics.median(ttfts), "measured_tpot_s": statistics.median(tp) if tp else None,
            "measured_output_tokens_per_s": statistics.median(tputs), "ttft_samples_s": ttfts, "reps": reps}


def _deployment(precision: str):
    import roofline as rl

    from .fast import DEPLOYMENT_DTYPES

    w, a, kv = DEPLOYMENT_DTYPES[precision]
    gran = {"fp8": "tensor", "int8": "row"}.get(precision)
    # our own reference engines (calibrate/fast.py, eager HF) have no serving scheduler: the bare roofline, whose
    # launches calibrate/engine.py swaps for the engine's kernel counts
    return rl.Deployment(weight_dtype=w, activation_dtype=a, kv_dtype=kv, weight_scale_granularity=gran, engine=None)


def _predict(spec, hw, precision: str, batch: int, prompt: int, output: int):
    import roofline as rl

    return rl.predict(spec, hw, rl.Workload(batch_size=batch, prompt_tokens=prompt, output_tokens=output), _deployment(precision))


def _pred_row(p, output: int) -> dict:
    return {"ttft_s": p.ttft_s, "tpot_s": p.tpot_s if output > 1 else None, "output_tokens_per_s": p.output_tokens_per_s}


IMPLS = ("fast", "hf", "own")


def _precisions_of(impl: str, precisions: list[str], device: str) -> tuple[list[str], list[str]]:
    """(precisions this implementation runs, notes on the ones it does not)."""
    if impl == "fast":
        return list(precisions), []
    native = "fp32" if device == "cpu" else "bf16"
    keep = [p for p in precisions if p in ("bf16", "fp32")]
    notes = [f"{impl}: runs {native} only; precision {p} skipped" for p in precisions if p not in ("bf16", "fp32")]
    return ([native] if keep else []), notes


def run_validation(models: list[str], impls: list[str], batches: list[int], prompts: list[int], outputs: list[int],
                   out: str | Path | None = None, calibration: str | Path | None = None, profile: str | None = None,
                   layers: int | None = None, reps: int = 3, overwrite: bool = False, command: str = "roofline validate",
                   precisions: list[str] | None = None, deadline_s: float | None = None, count_engine: bool = True,
                   kv_bucket_tokens: int = 32) -> ValidationRun:
    try:
        import torch
    except ImportError:
        raise SpecError("torch", "is not installed; pip install roofline[calibrate] (or pip install torch)") from None
    from roofline.calibration import CalibrationMismatchWarning, load_calibration
    from roofline.registry import load_hardware

    from . import engine as E
    from .fast import DEPLOYMENT_DTYPES

    for name, values in (("batch_sizes", batches), ("prompt_tokens", prompts), ("output_tokens", outputs)):
        if not values or any(v < 1 for v in values):
            raise SpecError(name, f"needs positive integers, got {values}")
    bad = sorted(set(impls) - set(IMPLS))
    if bad:
        raise SpecError("impl", f"unknown implementation {', '.join(bad)}; choose from {', '.join(IMPLS)} (comma separated)")
    info = D.detect()
    device = info.kind
    precisions = precisions or (["fp32"] if device == "cpu" else ["bf16"])
    unknown = sorted(set(precisions) - set(DEPLOYMENT_DTYPES))
    if unknown:
        raise SpecError("precision", f"unknown precision {', '.join(unknown)}; choose from bf16, fp8, int8 (fp32 on a CPU)")
    cal = load_calibration(calibration) if calibration else None
    matched, match_note = D.match_profile(info)
    base = profile or (cal.provenance.base_profile if cal else None) or matched
    out = Path(out) if out else (Path(calibration).parent / "validation" if calibration else Path("calibrate") / "results" / info.slug / "validation")
    run = ValidationRun(out=out)
    if base is None:
        run.notes.append(f"{match_note}: measurements only, no predictions (give --profile ID or --calibration FILE)")
    hw = load_hardware(base, analytical=True) if base else None  # the datasheet prediction, not the shipped calibration
    hw_cal = None
    if cal is not None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CalibrationMismatchWarning)
            hw_cal = load_hardware(base, calibration=calibration)
        run.notes += [str(w.message) for w in caught if issubclass(w.category, CalibrationMismatchWarning)]
    eager_s = cal.kernel_overhead_s if cal else (hw.efficiency.kernel_overhead_s if hw else None)
    graph_s = cal.kernel_overhead_graph_s if cal else None
    env = {"device_name": info.name, "device_kind": info.kind, "driver_version": info.driver_version,
           "cuda_version": info.cuda_version, "torch_version": info.torch_version}
    meta = {**env, "profile": base, "profile_match": base is not None and base == matched,
            "calibration_id": cal.id if cal else None, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": command,
            "engines": {k: E.ENGINES[k]["label"] for k in impls}}
    R.write_json(out / "environment.json", {**meta, "clocks_hz": info.clocks_hz, "notes": run.notes})

    from .llama import check_supported

    for model_id in models:
        spec = load_spec(model_id, layers)
        check_supported(spec)  # every implementation builds dense Llama-architecture specs: say so before any skip
        for impl in impls:
            precs, notes = _precisions_of(impl, precisions, device)
            run.notes += [n for n in notes if n not in run.notes]
            for precision in precs:
                runner, counts = None, None
                for batch in batches:
                    for prompt in prompts:
                        for output in outputs:
                            key = f"{Path(model_id).stem}-{impl}-{precision}-L{spec.num_layers}-b{batch}-p{prompt}-o{output}"
                            path = out / "runs" / f"{key}.json"
                            doc = R.read_json(path)
                            fp = {**env, "dtype": precision, "reps": reps, "layers": spec.num_layers}
                            if not overwrite and doc and doc.get("complete") and doc.get("fingerprint") == fp:
                                row = doc["row"]
                                run.reused += 1
                            else:
                                if prompt + output > spec.max_context:
                                    raise SpecError("prompt_tokens", f"{prompt} + {output} exceeds max_context={spec.max_context} of {spec.name}")
                                pred = _predict(spec, hw, precision, batch, prompt, output) if hw is not None else None
                                if pred is not None and not pred.fits:
                                    run.notes.append(f"{key}: does not fit in memory ({pred.fit_message}); skipped")
                                    continue
                                if deadline_s is not None and pred is not None:
                                    build = 0.0 if runner is not None else 5.0 + pred.weight_bytes / 20e9
                                    est = build + (reps + 1) * pred.e2e_latency_s * 1.5 + 1.0
                                    left = deadline_s - time.monotonic()
                                    if est > left:
                                        run.notes.append(f"{key}: skipped, the time budget is spent (needs ~{est:.0f} s, {max(left, 0):.0f} s left)")
                                        continue
                                if runner is None:
                                    runner = _runner(impl, spec, precision, device, kv_bucket_tokens, prompt)
                                    if count_engine:
                                        counts = _count(impl, spec, precision, device, run)
                                row = {"model": model_id, "impl": impl, "layers": spec.num_layers, "dtype": precision,
                                       "batch": batch, "prompt": prompt, "output": output}
                                try:
                                    if impl == "fast":
                                        from . import fast

                                        row.update(fast.measure(runner, batch, prompt, output, reps))
                                    else:
                                        row.update(measure(runner, torch, device, spec.vocab_size, batch, prompt, output, reps))
                                except RuntimeError as exc:
                                    if "out of memory" not in str(exc).lower():
                                        raise
                                    if device == "cuda":
                                        torch.cuda.empty_cache()
                                    run.notes.append(f"{key}: out of memory; skipped (lower --batch-sizes or --layers)")
                                    continue
                                if counts is not None:
                                    row.update({"engine_prefill_kernels_per_layer": counts[0].per_layer,
                                                "engine_decode_kernels_per_layer": counts[1].per_layer,
                                                "engine_prefill_kernels_rest": counts[0].rest, "engine_decode_kernels_rest": counts[1].rest,
                                                "engine_count_method": counts[0].method})
                                run.ran += 1
                            row = {k: v for k, v in row.items() if not k.startswith(("datasheet_", "calibrated_", "engine_ttft", "engine_tpot", "engine_output"))}
                            row["engine"] = E.ENGINES[impl]["label"]
                            preds = {}
                            for mode, h in (("datasheet", hw), ("calibrated", hw_cal)):
                                if h is not None:
                                    preds[mode] = _predict(spec, h, precision, batch, prompt, output)
                                    row.update({f"{mode}_{k}": v for k, v in _pred_row(preds[mode], output).items()})
                            base_pred = preds.get("calibrated") or preds.get("datasheet")
                            if base_pred is not None and row.get("engine_decode_kernels_per_layer") is not None:
                                pk = E.KernelCount(row["engine_prefill_kernels_per_layer"], row["engine_prefill_kernels_rest"], device, "")
                                dk = E.KernelCount(row["engine_decode_kernels_per_layer"], row["engine_decode_kernels_rest"], device, "")
                                adj = E.adjust(base_pred, spec.num_layers, E.ENGINES[impl], pk, dk, eager_s, graph_s)
                                row.update({"engine_ttft_s": adj["ttft_s"], "engine_tpot_s": adj["tpot_s"],
                                            "engine_output_tokens_per_s": adj["output_tokens_per_s"],
                                            "engine_per_kernel_decode_s": adj["per_kernel_decode_s"]})
                            R.write_json(path, {"complete": True, "fingerprint": fp, "row": row})
                            run.rows.append(row)
                del runner
                if device == "cuda":
                    torch.cuda.empty_cache()
    run.paths = write_validation_report(run.rows, meta, out)
    return run


def _count(impl: str, spec: ModelSpec, precision: str, device: str, run: ValidationRun):
    """(prefill, decode) kernel counts of this engine, from 1- and 2-layer copies of `spec` (engine.count_kernels)."""
    import torch

    from . import engine as E

    def make_pass(n_layers):
        small = ModelSpec.model_validate({**spec.model_dump(), "num_layers": n_layers})
        r = _runner(impl, small, precision, device, 32, 16)
        tokens = torch.randint(0, small.vocab_size, (1, 16), device=device)
        if impl == "fast":
            r.allocate(1, 32)

            def pre():
                r.prefill(tokens)

            def dec():
                with torch.inference_mode():
                    r._body(r.kv_len(16))  # eagerly: the kernels a graph replay runs

            def at_16():
                r.pos.fill_(16)
            return (None, pre), (at_16, dec)

        def reset():
            r.allocate_cache(1, 32)

        def pre_e():
            with torch.inference_mode():
                r(tokens, 0)

        def after_prefill():
            reset()
            pre_e()

        def dec_e():
            with torch.inference_mode():
                r(tokens[:, :1], 16).argmax(-1)
        return (reset, pre_e), (after_prefill, dec_e)

    try:
        pre, dec = E.count_kernels(make_pass, device)
        if min(pre.per_layer, dec.per_layer) <= 0 or min(pre.rest, dec.rest) < 0:
            raise RuntimeError(f"implausible counts: prefill {pre}, decode {dec}")
        return pre, dec
    except Exception as exc:  # noqa: BLE001  a counting failure loses the engine column, not the run
        run.notes.append(f"{impl} {precision}: kernels not counted ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120]})")
        return None


def _runner(impl: str, spec: ModelSpec, precision: str, device: str, kv_bucket_tokens: int = 32, calib_tokens: int = 64):
    """The runner of one implementation, its model built on `device`."""
    import torch

    if impl == "fast":
        from . import fast

        model = fast.build(spec, precision, device)
        if precision == "fp8":
            gen = torch.Generator(device="cpu").manual_seed(1)
            fast.calibrate_fp8(model, torch.randint(0, spec.vocab_size, (1, max(calib_tokens, 16)), generator=gen).to(device))
        return fast.Runner(model, kv_bucket_tokens=kv_bucket_tokens)
    tdtype = torch.float32 if precision == "fp32" else torch.bfloat16
    if impl == "own":
        from . import llama

        with torch.device(device):
            return llama.build(spec, tdtype, device)
    from . import hf

    return hf.HFRunner(hf.build(spec, tdtype, device))
