"""`roofline validate`: run real transformers, measure TTFT, TPOT and throughput, compare with the predictions.

For each model x implementation x batch x prompt x output length:

* measured: one untimed warm-up generation, then `reps` timed ones (the median of each metric is
  kept). TTFT = prefill of batch x prompt tokens plus the argmax of the first token; each decode
  step (one token per sequence against the static KV cache) is timed separately; TPOT = their
  mean; throughput = batch · output / (TTFT + Σ steps). Wall clock after `torch.cuda.synchronize()`,
  so CPU launch overhead counts, as it does for a user.
* predicted: `roofline.predict` of the same (possibly truncated: `--layers N`) spec, workload and
  dtype, with the datasheet profile (`analytical`) and, given `--calibration`, the calibrated one.
  The prediction never sees a measured end-to-end time.

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
                lines.append(f"  {s['metric']:<10} {s['mode']:<10} median |error| {s['median_ape'] * 100:.1f}%, worst {s['worst_ape'] * 100:.1f}% over {s['runs']} run(s)")
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


def _predict(spec, hw, dtype: str, batch: int, prompt: int, output: int) -> dict:
    import roofline as rl

    p = rl.predict(spec, hw, rl.Workload(batch_size=batch, prompt_tokens=prompt, output_tokens=output),
                   rl.Deployment(weight_dtype=dtype, activation_dtype=dtype, kv_dtype=dtype))
    return {"ttft_s": p.ttft_s, "tpot_s": p.tpot_s if output > 1 else None, "output_tokens_per_s": p.output_tokens_per_s, "mode": p.mode}


def run_validation(models: list[str], impls: list[str], batches: list[int], prompts: list[int], outputs: list[int],
                   out: str | Path | None = None, calibration: str | Path | None = None, profile: str | None = None,
                   layers: int | None = None, reps: int = 3, overwrite: bool = False, command: str = "roofline validate") -> ValidationRun:
    try:
        import torch
    except ImportError:
        raise SpecError("torch", "is not installed; pip install roofline[calibrate] (or pip install torch)") from None
    from roofline.calibration import CalibrationMismatchWarning, load_calibration
    from roofline.registry import load_hardware

    for name, values in (("batch_sizes", batches), ("prompt_tokens", prompts), ("output_tokens", outputs)):
        if not values or any(v < 1 for v in values):
            raise SpecError(name, f"needs positive integers, got {values}")
    bad = sorted(set(impls) - {"own", "hf"})
    if bad:
        raise SpecError("impl", f"unknown implementation {', '.join(bad)}; choose own, hf or both (own,hf)")
    info = D.detect()
    cal = load_calibration(calibration) if calibration else None
    matched, match_note = D.match_profile(info)
    base = profile or (cal.provenance.base_profile if cal else None) or matched
    out = Path(out) if out else (Path(calibration).parent / "validation" if calibration else Path("calibrate") / "results" / info.slug / "validation")
    run = ValidationRun(out=out)
    if base is None:
        run.notes.append(f"{match_note}: measurements only, no predictions (give --profile ID or --calibration FILE)")
    hw = load_hardware(base) if base else None
    hw_cal = None
    if cal is not None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CalibrationMismatchWarning)
            hw_cal = load_hardware(base, calibration=calibration)
        run.notes += [str(w.message) for w in caught if issubclass(w.category, CalibrationMismatchWarning)]
    device = info.kind
    dtype_name = "bf16" if device == "cuda" else "fp32"
    tdtype = torch.bfloat16 if device == "cuda" else torch.float32
    env = {"device_name": info.name, "device_kind": info.kind, "driver_version": info.driver_version,
           "cuda_version": info.cuda_version, "torch_version": info.torch_version}
    meta = {**env, "profile": base, "profile_match": base is not None and base == matched,
            "calibration_id": cal.id if cal else None, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": command}
    R.write_json(out / "environment.json", {**meta, "clocks_hz": info.clocks_hz, "notes": run.notes})

    for model_id in models:
        spec = load_spec(model_id, layers)
        for impl in impls:
            runner = None
            for batch in batches:
                for prompt in prompts:
                    for output in outputs:
                        key = f"{Path(model_id).stem}-{impl}-L{spec.num_layers}-b{batch}-p{prompt}-o{output}"
                        path = out / "runs" / f"{key}.json"
                        doc = R.read_json(path)
                        fp = {**env, "dtype": dtype_name, "reps": reps, "layers": spec.num_layers}
                        if not overwrite and doc and doc.get("complete") and doc.get("fingerprint") == fp:
                            row = doc["row"]
                            run.reused += 1
                        else:
                            if prompt + output > spec.max_context:
                                raise SpecError("prompt_tokens", f"{prompt} + {output} exceeds max_context={spec.max_context} of {spec.name}")
                            if runner is None:
                                runner = _runner(impl, spec, tdtype, device)
                            row = {"model": model_id, "impl": impl, "layers": spec.num_layers, "dtype": dtype_name,
                                   "batch": batch, "prompt": prompt, "output": output}
                            try:
                                row.update(measure(runner, torch, device, spec.vocab_size, batch, prompt, output, reps))
                            except RuntimeError as exc:
                                if "out of memory" not in str(exc).lower():
                                    raise
                                if device == "cuda":
                                    torch.cuda.empty_cache()
                                run.notes.append(f"{key}: out of memory; skipped (lower --batch-sizes or --layers)")
                                continue
                            run.ran += 1
                        row = {k: v for k, v in row.items() if not k.startswith(("datasheet_", "calibrated_"))}
                        for mode, h in (("datasheet", hw), ("calibrated", hw_cal)):
                            if h is not None:
                                pred = _predict(spec, h, dtype_name, batch, prompt, output)
                                row.update({f"{mode}_{k}": v for k, v in pred.items() if k != "mode"})
                        R.write_json(path, {"complete": True, "fingerprint": fp, "row": row})
                        run.rows.append(row)
            del runner
    run.paths = write_validation_report(run.rows, meta, out)
    return run


def _runner(impl: str, spec: ModelSpec, tdtype, device: str):
    if impl == "own":
        from . import llama

        return llama.build(spec, tdtype, device)
    from . import hf

    return hf.HFRunner(hf.build(spec, tdtype, device))
