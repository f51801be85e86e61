"""One prepared run on a lent GPU: environment, warm-up, calibration, validation, all packed into at most 8 files.

`calibrate/device_run.sh OUT_DIR BUDGET_S` installs the carried wheels and runs this module; it can
also run alone: `python -m calibrate.device_run --out OUT --budget-s 500 [--dry-run]`.

Phases, each bounded by what is left of the budget (monotonic clock):

1. environment: GPU, clocks, driver, CUDA, torch and package versions, `nvidia-smi`, which attention
   kernel each path gets (the profiler's kernel names of one call: flash, efficient, cudnn or
   math), which precisions run here (`fast.precision_support`), and self-checks of the reference
   engine (logits against the textbook pass; graph-replayed decode against eager decode);
2. calibration (`runner.run_calibration`, which warms the GPU to steady clocks first): bandwidth,
   bf16 and fp8 GEMMs over the 1B-70B shapes, attention, launch overhead eager and from a CUDA graph;
3. validation in priority order, each point skipped (and noted) when its estimate no longer fits:
   the reference engine (`fast`) for 1B, 3B, 8B x bf16, fp8 x batches x prompts; the eager HF
   reference on a subset; int8 weight-only where torch has a CUDA kernel; 70B in fp8 on one GPU;
4. packing: results.tar.gz (every file written), summary.csv (one row per measured point, with
   each mode's prediction and error), summary.md (the tables), environment.json; with the shell
   wrapper's device_run.log that is 5 files, one folder level.

`--dry-run` runs the same phases on the CPU with the 2-layer tiny-llama spec, quick calibration
sizes and one repetition, in seconds (tests/test_device_run.py).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from roofline.errors import SpecError

from . import results as R

# the plan of a full run; everything past the budget is skipped with the reason
FULL = {
    "fast": {"models": ["llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b"], "precisions": ["bf16", "fp8"],
             "batches": [1, 8, 32], "prompts": [512, 2048], "outputs": [128]},
    "hf": {"models": ["llama-3.2-1b", "llama-3.1-8b"], "precisions": ["bf16"], "batches": [1, 8], "prompts": [512], "outputs": [128]},
    "int8": {"models": ["llama-3.2-1b", "llama-3.1-8b"], "precisions": ["int8"], "batches": [1, 8], "prompts": [512], "outputs": [128]},
    "big": {"models": ["llama-3.1-70b"], "precisions": ["fp8"], "batches": [1, 8], "prompts": [512], "outputs": [128]},
    "reps": 3,
    "calibration": ["bandwidth_copy", "bandwidth_read", "bandwidth_write", "gemm_bf16", "gemm_fp8", "attention_prefill",
                    "attention_decode", "launch_overhead"],
    "hf_reserve_s": 45.0,
}
DRY = {
    "fast": {"models": ["tiny-llama"], "precisions": ["bf16", "fp8"], "batches": [2], "prompts": [16], "outputs": [4]},
    "hf": {"models": ["tiny-llama"], "precisions": ["fp32"], "batches": [2], "prompts": [16], "outputs": [4]},
    "int8": {"models": ["tiny-llama"], "precisions": ["int8"], "batches": [2], "prompts": [16], "outputs": [4]},
    "big": {"models": [], "precisions": ["fp8"], "batches": [1], "prompts": [16], "outputs": [4]},
    "reps": 1,
    "calibration": ["bandwidth_copy", "gemm_bf16", "attention_decode", "launch_overhead"],
    "hf_reserve_s": 0.0,
}
PACK_RESERVE_S = 15.0
MAX_FILES = 8
SUMMARY_GROUP = ("impl", "model", "dtype")


def _classify(names: list[str]) -> str:
    low = " ".join(names).lower()
    # cuDNN first: its fused attention kernels' names also contain "flash"
    for key, label in (("cudnn", "cudnn"), ("flash", "flash"), ("fmha", "efficient"), ("efficient", "efficient"),
                       ("cutlass", "efficient")):
        if key in low:
            return label
    return "math (unfused matmul + softmax)"


def sdpa_backend(device: str, q_heads: int, kv_heads: int, q_len: int, kv_len: int, mask: bool, gqa: bool,
                 flash_only: bool = False) -> dict:
    """Which SDPA kernel one call of these shapes runs here: the profiler's kernel (CPU: operator) names, classified."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    dt = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        q = torch.randn(1, q_heads, q_len, 64, dtype=dt)
        k = torch.randn(1, kv_heads if gqa else q_heads, kv_len, 64, dtype=dt)
        v = torch.randn_like(k)
        m = torch.ones(q_len, kv_len, dtype=torch.bool).tril(kv_len - q_len) if mask else None
    kw = {"attn_mask": m} if mask else {"is_causal": q_len > 1}
    if gqa:
        kw["enable_gqa"] = True

    def call():
        if flash_only and device == "cuda":
            from torch.nn.attention import SDPBackend, sdpa_kernel

            with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                return torch.nn.functional.scaled_dot_product_attention(q, k, v, **kw)
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, **kw)

    try:
        call()
        acts = [ProfilerActivity.CUDA] if device == "cuda" else [ProfilerActivity.CPU]
        with profile(activities=acts) as prof:
            call()
            if device == "cuda":
                torch.cuda.synchronize()
        if device == "cuda":
            names = [e.name for e in prof.events() if getattr(e.device_type, "name", "").upper().endswith("CUDA")]
        else:
            names = [e.name for e in prof.events() if "attention" in e.name or "bmm" in e.name or "softmax" in e.name]
    except Exception as exc:  # noqa: BLE001  a refused backend is the answer, not a crash
        return {"backend": "refused", "reason": f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:160]}"}
    return {"backend": _classify(names), "kernels": sorted(set(names))[:6]}


def attention_backends(device: str) -> dict:
    """The attention kernel of each validated path (8B-like heads: 32 query, 8 KV; d = 64; 512 tokens, 64 on a CPU)."""
    n = 512 if device == "cuda" else 64
    return {
        "fast prefill (SDPA enable_gqa, flash asserted)": sdpa_backend(device, 32, 8, n, n, False, True, flash_only=True),
        "fast decode": {"backend": "grouped decode kernel (baddbmm + softmax + bmm), not SDPA"},
        "hf prefill (SDPA, explicit mask, K/V repeated)": sdpa_backend(device, 32, 8, n, n, True, False),
        "hf decode (SDPA, mask over the static cache)": sdpa_backend(device, 32, 8, 1, n + 128, True, False),
        "calibrate attention_prefill (causal GQA)": sdpa_backend(device, 32, 8, n, n, False, True),
        "calibrate attention_decode (GQA, q_len 1)": sdpa_backend(device, 32, 8, 1, n, False, True),
    }


def self_checks(device: str, model_id: str) -> dict:
    """Correct before timed: the reference engine's logits against the textbook pass (bf16, fp8), and on CUDA the
    graph-replayed decode against the same steps run eagerly (same tokens). A 2-layer copy of `model_id`."""
    import torch

    from . import fast
    from .validate import load_spec

    spec = load_spec(model_id, layers=2)
    out: dict = {"model": f"{model_id} (2 layers)"}
    tokens = torch.randint(0, spec.vocab_size, (2, 48)).to(device)
    for precision in ("bf16", "fp8"):
        if not fast.precision_support(precision, device).ok:
            out[f"{precision}_logits_rel_error"] = "skipped: precision not supported here"
            continue
        try:
            m = fast.build(spec, precision, device)
            if precision == "fp8":
                fast.calibrate_fp8(m, tokens)
            m.allocate_cache(2, 48)
            with torch.inference_mode():
                got = m.prefill(tokens).float()
                ref = fast.plain_logits(m, tokens)[:, -1]
            out[f"{precision}_logits_rel_error"] = float((got - ref).norm() / ref.norm())
            if precision == "bf16" and device == "cuda":
                seqs = {}
                for graphs in (True, False):
                    r = fast.Runner(m, graphs=graphs, kv_bucket_tokens=16)
                    r.allocate(2, 48 + 20)
                    r.prepare(48, 20)
                    r.prefill(tokens)
                    steps = []
                    for _ in range(19):
                        r.step()
                        steps.append(r.tok.clone())
                    seqs[graphs] = torch.cat(steps, dim=1)
                out["graph_decode_equals_eager"] = bool(torch.equal(seqs[True], seqs[False]))
            del m
        except Exception as exc:  # noqa: BLE001  a failed check is reported, and the run goes on
            out[f"{precision}_error"] = f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    if device != "cuda":
        out["graph_decode_equals_eager"] = "skipped: no CUDA graphs on the CPU"
    return out


def _versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "pydantic", "pydantic-core", "numpy", "pandas", "PyYAML", "nvidia-ml-py"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _nvidia_smi() -> str:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return "nvidia-smi not found"
    query = "name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,clocks.max.mem,power.limit,temperature.gpu,pstate"
    try:
        res = subprocess.run([exe, f"--query-gpu={query}", "--format=csv"], capture_output=True, text=True, timeout=20)
        return (res.stdout or res.stderr).strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"nvidia-smi failed: {exc}"


def environment(dry: bool) -> dict:
    from . import device as D
    from . import fast

    info = D.detect()
    env = info.as_dict()
    env.update(versions=_versions(), nvidia_smi=_nvidia_smi(), platform=platform.platform(), dry_run=dry,
               date=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    env["profile"], env["profile_note"] = D.match_profile(info)
    env["attention_backends"] = attention_backends(info.kind)
    env["precisions"] = {p: vars(fast.precision_support(p, info.kind)) for p in ("bf16", "fp8", "int8")}
    return env


class Log:
    """Prints each line at once (the device returns only the output's tail) and keeps the phase times."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.phases: dict[str, float] = {}

    def __call__(self, msg: str) -> None:
        print(f"[{time.monotonic() - self.t0:7.1f} s] {msg}", flush=True)

    def phase(self, name: str, start: float) -> None:
        self.phases[name] = time.monotonic() - start


def _rows(val_dir: Path) -> list[dict]:
    rows = []
    for p in sorted((val_dir / "runs").glob("*.json")):
        doc = R.read_json(p)
        if doc and doc.get("complete"):
            rows.append(doc["row"])
    return rows


def summary_markdown(env: dict, cal: dict | None, rows: list[dict], notes: list[str], phases: dict, budget_s: float,
                     dry: bool) -> str:
    from .report import _apct, error_summary

    lines = [f"# Device run on {env.get('name')}", ""]
    if dry:
        lines += ["> **Dry run on the CPU** (tiny-llama, quick sizes): it proves the script and its files; its numbers say "
                  "nothing about a GPU.", ""]
    v = env.get("versions", {})
    lines += [f"- device {env.get('name')} ({env.get('kind')}), driver {env.get('driver_version')}, CUDA {env.get('cuda_version')}, "
              f"torch {v.get('torch')}, transformers {v.get('transformers')}, python {v.get('python')}",
              f"- compared with profile {env.get('profile_used') or env.get('profile')} (detected: {env.get('profile')}, "
              f"{env.get('profile_note')})",
              f"- budget {budget_s:.0f} s; phases: " + ", ".join(f"{k} {s:.1f} s" for k, s in phases.items()), ""]
    lines += ["## Attention kernels", "", "| path | backend | kernels |", "| --- | --- | --- |"]
    for path, b in env.get("attention_backends", {}).items():
        lines.append(f"| {path} | {b.get('backend')} | {', '.join(b.get('kernels', [])) or b.get('reason', '')} |")
    lines += ["", "## Self-checks (2-layer copy, before any timing)", ""]
    lines += [f"- {k}: {v}" for k, v in env.get("self_checks", {}).items()]
    lines += ["", "## Precisions", ""]
    lines += [f"- {p}: {'runs' if s['ok'] else 'skipped'}: {s['how'] or s['reason']}" for p, s in env.get("precisions", {}).items()]
    lines += ["", "## Calibration", ""]
    if cal:
        mem = cal.get("memory") or {}
        lines.append(f"- copy bandwidth (large kernels): {mem.get('rate_per_s', 0) / 1e12:.3f} TB/s, latency {mem.get('latency_s', 0) * 1e6:.2f} us")
        for dt, t in (cal.get("gemm") or {}).items():
            best = max(max(r) for r in t["fraction"])
            lines.append(f"- GEMM {dt}: best {best * t['peak_per_s'] / 1e12:.0f} TFLOP/s ({best:.3f} of the {t['peak_per_s'] / 1e12:.0f} TFLOP/s datasheet)")
        g = cal.get("kernel_overhead_graph_s")
        lines.append(f"- per-kernel overhead: eager {cal.get('kernel_overhead_s', 0) * 1e6:.2f} us, CUDA graph "
                     f"{'not measured' if g is None else f'{g * 1e6:.2f} us'}")
    else:
        lines.append("- no calibrated profile (see notes)")
    lines += ["", "## Prediction error (|predicted / measured - 1|), per implementation, model and precision", "",
              "| impl | model | precision | metric | mode | runs | median | worst |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in error_summary(rows, SUMMARY_GROUP):
        if s["runs"]:
            lines.append(f"| {s['impl']} | {s['model']} | {s['dtype']} | {s['metric']} | {s['mode']} | {s['runs']} "
                         f"| {_apct(s['median_ape'])} | {_apct(s['worst_ape'])} |")
    lines += ["", f"{len(rows)} measured point(s); per point: summary.csv. Modes: datasheet, calibrated, engine "
                  "(calibrated with the engine's counted kernels, calibrate/engine.py).", ""]
    if notes:
        lines += ["## Notes (skips and their reasons)", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(lines)


def summary_csv(rows: list[dict]) -> str:
    from .report import validation_csv

    return validation_csv(rows)


def pack(out: Path, work: Path) -> list[Path]:
    """results.tar.gz of the work folder (then removed); every file left in `out` is a plain file at its top."""
    tar_path = out / "results.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(work, arcname="results")
    shutil.rmtree(work)
    files = sorted(p for p in out.rglob("*") if p.is_file())
    if len(files) > MAX_FILES:
        raise RuntimeError(f"{len(files)} files in {out}; a device run brings back at most {MAX_FILES}")
    return files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m calibrate.device_run", description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output folder (the device's $OUT)")
    ap.add_argument("--budget-s", type=float, required=True, help="seconds this run may take, packing included")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny-llama, quick sizes: seconds")
    ap.add_argument("--profile", default=None, help="hardware profile to compare with (default: the detected match; "
                                                    "h200 on a dry run)")
    args = ap.parse_args(argv)
    log = Log()
    t_end = log.t0 + args.budget_s
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    if work.exists():
        shutil.rmtree(work)
    plan = DRY if args.dry_run else FULL
    notes: list[str] = []

    import torch

    if args.dry_run and torch.cuda.is_available():
        log("dry run: CUDA is visible but the dry run stays on the CPU")
    if not args.dry_run and not torch.cuda.is_available():
        raise SpecError("device", "no CUDA device: run with --dry-run on a CPU")

    start = time.monotonic()
    env = environment(args.dry_run)
    profile = args.profile or env["profile"] or ("h200" if args.dry_run else None)
    env["profile_used"] = profile
    log(f"device {env['name']} ({env['kind']}), driver {env.get('driver_version')}, CUDA {env.get('cuda_version')}, "
        f"torch {env['versions']['torch']}, profile {profile}")
    log(f"nvidia-smi: {env['nvidia_smi']}")
    for path, b in env["attention_backends"].items():
        log(f"attention {path}: {b.get('backend')} {b.get('kernels', b.get('reason', ''))}")
    for p, s in env["precisions"].items():
        log(f"precision {p}: {'ok, ' + s['how'] if s['ok'] else 'skipped: ' + s['reason']}")
    env["self_checks"] = self_checks(env["kind"], plan["fast"]["models"][0])
    log(f"self-checks: {env['self_checks']}")
    log.phase("environment", start)
    R.write_json(out / "environment.json", {**env, "profile_used": profile, "budget_s": args.budget_s, "plan": plan})

    # ---------------------------------------------------------------- calibration
    start = time.monotonic()
    from .runner import run_calibration

    cal_dir = work / "calibration"
    cal = None
    try:
        crun = run_calibration(out=cal_dir, profile=profile, quick=args.dry_run, overwrite=True,
                               command=f"calibrate/device_run.sh (budget {args.budget_s:.0f} s)", only=plan["calibration"])
        log(crun.summary())
        notes += [f"calibration: {n}" for n in crun.notes]
        notes += [f"calibration {k}: {v}" for k, v in crun.failed.items()]
        if crun.calibration_path:
            cal = json.loads(Path(crun.calibration_path).read_text())
    except Exception as exc:  # noqa: BLE001  no calibration: validation still runs with datasheet predictions
        notes.append(f"calibration failed: {exc.__class__.__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
        log(f"calibration failed: {exc}")
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the 8 GiB copy buffers and LM-head-sized GEMM operands go back before the models come
    log.phase("calibration", start)

    # ---------------------------------------------------------------- validation
    start = time.monotonic()
    from .validate import run_validation

    def interim(rows):
        R.write_atomic(out / "summary.csv", summary_csv(rows))
        R.write_atomic(out / "summary.md", summary_markdown(env, cal, rows, notes + ["(interim: written after a stage)"],
                                                            log.phases, args.budget_s, args.dry_run))

    val_dir = work / "validation"
    cal_path = (cal_dir / "calibration.json") if cal else None
    stop = t_end - PACK_RESERVE_S
    supported = {p: s["ok"] for p, s in env["precisions"].items()}
    supported["fp32"] = True
    stages = []
    for model in plan["fast"]["models"]:
        for prec in plan["fast"]["precisions"]:
            stages.append(("fast", model, prec, plan["fast"], stop - plan["hf_reserve_s"]))
    for model in plan["hf"]["models"]:
        stages.append(("hf", model, plan["hf"]["precisions"][0], plan["hf"], stop))
    for model in plan["int8"]["models"]:
        stages.append(("fast", model, "int8", plan["int8"], stop))
    for model in plan["big"]["models"]:
        stages.append(("fast", model, "fp8", plan["big"], stop))
    for impl, model, prec, grid, deadline in stages:
        label = f"{impl} {model} {prec}"
        if not supported.get(prec, False) and impl == "fast":
            notes.append(f"{label}: skipped: {env['precisions'][prec]['reason']}")
            continue
        if time.monotonic() > deadline:
            notes.append(f"{label}: skipped: the time budget is spent")
            continue
        t = time.monotonic()
        try:
            vrun = run_validation([model], [impl], grid["batches"], grid["prompts"], grid["outputs"], out=val_dir,
                                  calibration=cal_path, profile=profile, reps=plan["reps"], command="calibrate/device_run.sh",
                                  precisions=[prec], deadline_s=deadline)
        except Exception as exc:  # noqa: BLE001  one failing stage is recorded; the others still run
            notes.append(f"{label}: failed: {exc.__class__.__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
            log(f"{label}: FAILED {exc}")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        notes += [f"{label}: {n}" for n in vrun.notes]
        log(f"{label}: {vrun.ran} point(s) in {time.monotonic() - t:.1f} s")
        interim(_rows(val_dir))  # if the command is killed later, these flat files still come back
    log.phase("validation", start)

    # ---------------------------------------------------------------- report and pack
    start = time.monotonic()
    rows = _rows(val_dir)
    if rows:
        from .report import write_validation_report

        meta = {"device_name": env["name"], "device_kind": env["kind"], "profile": profile,
                "calibration_id": cal.get("id") if cal else None, "command": "calibrate/device_run.sh",
                "torch_version": env["versions"]["torch"], "cuda_version": env.get("cuda_version"),
                "driver_version": env.get("driver_version"), "date": env["date"]}
        try:  # the full report (CSV, markdown, SVGs) goes into the tarball; the summaries below do not need it
            write_validation_report(rows, meta, val_dir)
        except Exception as exc:  # noqa: BLE001
            notes.append(f"validation report failed: {exc.__class__.__name__}: {exc}")
    log.phase("report", start)
    md = summary_markdown(env, cal, rows, notes, log.phases, args.budget_s, args.dry_run)
    R.write_atomic(out / "summary.md", md)
    R.write_atomic(out / "summary.csv", summary_csv(rows))
    R.write_json(out / "environment.json", {**env, "profile_used": profile, "phases_s": log.phases, "notes": notes,
                                            "budget_s": args.budget_s, "plan": plan})
    files = pack(out, work)
    log(f"wrote {', '.join(p.name for p in files)} in {out} ({time.monotonic() - log.t0:.1f} s of {args.budget_s:.0f})")
    print(md, flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SpecError as exc:
        print(f"device_run: error: {exc}", file=sys.stderr)
        sys.exit(2)
