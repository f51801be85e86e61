"""`roofline calibrate`: detect the device, run every benchmark (resumably), fit, write the files."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from roofline.errors import SpecError

from . import device as D
from . import microbench as MB
from . import results as R


@dataclass
class CalibrationRun:
    """What a run did: where it wrote, which benchmarks ran or were reused, the calibration (if any)."""

    out: Path
    ran: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    calibration_path: Path | None = None
    profile: str | None = None
    profile_note: str = ""
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"results in {self.out}: {len(self.ran)} benchmark(s) run, {len(self.reused)} reused from a finished earlier run"
                 f" ({self.elapsed_s:.1f} s)"]
        lines += [f"  {name}: {why}" for name, why in self.failed.items()]
        lines.append(f"profile: {self.profile or 'none'} ({self.profile_note})")
        lines += [f"note: {n}" for n in self.notes]
        if self.calibration_path:
            lines.append(f"calibrated profile: {self.calibration_path}")
        else:
            lines.append("no calibrated profile written (measurements only): give --profile ID to compare against a profile")
        return "\n".join(lines)


def environment(info: D.DeviceInfo, command: str) -> dict:
    """The facts every result file records."""
    return {
        "device_name": info.name, "device_kind": info.kind, "slug": info.slug, "gpu_count": info.count,
        "memory_bytes": info.memory_bytes, "driver_version": info.driver_version, "cuda_version": info.cuda_version,
        "torch_version": info.torch_version, "compute_capability": info.compute_capability, "l2_bytes": info.l2_bytes,
        "power_limit_w": info.power_limit_w, "temperature_c": info.temperature_c, "clocks_hz": info.clocks_hz,
        "nvml_note": info.nvml_note, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command,
    }


def default_out(info: D.DeviceInfo) -> Path:
    return Path("calibrate") / "results" / info.slug


def run_calibration(out: str | Path | None = None, profile: str | None = None, quick: bool = False, overwrite: bool = False,
                    command: str = "roofline calibrate", only: list[str] | None = None, benches: dict | None = None) -> CalibrationRun:
    """Measure, fit and write. `only` restricts to some benchmarks; `benches` replaces them (tests)."""
    try:
        import torch
    except ImportError:
        raise SpecError("torch", "is not installed; pip install roofline[calibrate] (or pip install torch)") from None
    from roofline.registry import load_hardware

    t_start = time.perf_counter()
    info = D.detect()
    matched, note = D.match_profile(info)
    if profile:
        hw = load_hardware(profile, analytical=True)  # the datasheet the measurements are compared with
        base = profile
        match = matched == profile.lower()
        note = note if match else f"{note}; comparing against --profile {profile} anyway"
    else:
        base, match = matched, matched is not None
        hw = load_hardware(base, analytical=True) if base else None
    out = Path(out) if out else default_out(info)
    run = CalibrationRun(out=out, profile=base, profile_note=note)
    if info.nvml_note:
        run.notes.append(info.nvml_note)
    busy = D.busy_note() if info.kind == "cuda" else ""
    if busy:
        run.notes.append(busy)

    grid = MB.Grid.quick(info.kind) if quick else MB.Grid.full()
    env = environment(info, command)
    fp = R.fingerprint(env, grid.name, repr(grid))
    timer = MB.Timer(info.kind, l2_bytes=info.l2_bytes) if not quick else MB.Timer(info.kind, warmup_s=0.002, rep_s=0.01, min_reps=3, max_reps=20, l2_bytes=info.l2_bytes)
    ctx = MB.Context(torch=torch, device=info.kind, timer=timer, grid=grid,
                     compute_capability=info.compute_capability, gpu_count=info.count if info.kind == "cuda" else 0)
    todo = benches if benches is not None else MB.benchmarks(grid)
    if only:
        unknown = sorted(set(only) - set(todo))
        if unknown:
            raise SpecError("only", f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(todo)}")
        todo = {k: v for k, v in todo.items() if k in only}
    # steady clocks before the first benchmark (a GPU idles at a low SM clock and ramps up under load)
    warm = D.warm_up(max_s=3.0 if quick else 20.0) if info.kind == "cuda" else {"skipped": "no CUDA device"}
    if warm.get("steady") is False:
        run.notes.append(f"GPU warm-up did not settle within {warm['seconds']:.0f} s; the first benchmarks may run on rising clocks")
    env["warmup"] = warm
    R.write_json(out / "environment.json", {**env, "fingerprint": fp, "grid": repr(grid), "profile": base,
                                            "profile_match": match, "profile_note": note, "notes": run.notes})
    throttled = False
    for name, bench in todo.items():
        path = R.bench_path(out, name)
        if not overwrite and R.reusable(path, fp):
            run.reused.append(name)
            continue
        before = D.throttle_reasons() if info.kind == "cuda" else None
        rows: list[dict] = []
        doc = {"benchmark": name, "complete": False, "fingerprint": fp, "environment": env, "rows": rows}
        t0 = time.perf_counter()
        try:
            for row in bench(ctx):
                rows.append(row)
        except Exception as exc:  # noqa: BLE001  a failed benchmark is recorded; the run goes on
            doc["error"] = f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            run.failed[name] = doc["error"]
        except BaseException:  # interrupted: keep what was measured, marked incomplete, then stop
            doc["error"] = "interrupted"
            R.write_json(path, doc)
            raise
        after = D.throttle_reasons() if info.kind == "cuda" else None
        doc.update(elapsed_s=time.perf_counter() - t0, throttle_reasons_before=before, throttle_reasons_after=after,
                   throttled=None if after is None else bool(before or after))
        throttled |= bool(doc["throttled"])
        if "error" not in doc:
            doc["complete"] = True
        R.write_json(path, doc)
        run.ran.append(name)
    if throttled:
        run.notes.append("clocks were throttled (power or thermal) during some benchmarks; see throttle_reasons_* in bench/*.json")
    env["throttled"] = throttled if info.kind == "cuda" and not info.nvml_note else None

    if base is None:
        run.elapsed_s = time.perf_counter() - t_start
        return run
    from .fit import build_calibration
    from .report import calibration_markdown, write_calibration_plots

    bench_rows = {name: R.load_rows(out, name) for name in MB.benchmarks(grid) if R.bench_path(out, name).exists()}
    try:
        cal = build_calibration(bench_rows, env, hw, base, match, note, command, quick, grid.activation_dtype)
    except SpecError as exc:
        run.notes.append(f"no calibrated profile: {exc}")
        run.elapsed_s = time.perf_counter() - t_start
        return run
    run.calibration_path = R.write_json(out / "calibration.json", cal.model_dump(mode="json"))
    write_calibration_plots(cal, out)
    run.elapsed_s = time.perf_counter() - t_start
    R.write_atomic(out / "calibration.md", calibration_markdown(cal, run.elapsed_s))
    return run
