"""Which device the benchmarks run on: NVML facts, clocks and throttling, and the matching hardware profile.

NVML (nvidia-ml-py, imported as `pynvml`) gives the name, memory, clocks (current and max SM and
memory), power limit, driver, temperature and the clock-event (throttle) reasons. Without CUDA
the device is the CPU; without NVML (module or driver missing) the facts NVML would give are None
and `nvml_note` says why, in one line. Nothing here imports torch at module import time.

Profile matching: a profile matches when every word of its marketing name's model part
("H100", "SXM" / "PCIe" / "NVL") appears in the NVML name and the NVML memory total is within 3%
of the profile's `memory_bytes` (both are the nvidia-smi total). "NVIDIA H100 80GB HBM3" is
the SXM part (its PCIe sibling is "NVIDIA H100 PCIe"), so a bare "H100 80GB HBM3" maps to
h100-sxm; ties are broken by the closest memory.
"""

from __future__ import annotations

import platform
import re
from dataclasses import asdict, dataclass, field

# NVML clock-event reasons that mean the clocks were held below max for a reason other than idling
_THROTTLE_BITS = {
    0x0000000000000002: "applications_clocks_setting",
    0x0000000000000004: "sw_power_cap",
    0x0000000000000008: "hw_slowdown",
    0x0000000000000010: "sync_boost",
    0x0000000000000020: "sw_thermal_slowdown",
    0x0000000000000040: "hw_thermal_slowdown",
    0x0000000000000080: "hw_power_brake_slowdown",
    0x0000000000000100: "display_clock_setting",
}
_HARMLESS = {"applications_clocks_setting", "sync_boost", "display_clock_setting"}

# NVML names of parts whose profile name does not contain the same words
_NAME_ALIASES = {
    "h100-sxm": ("H100 80GB HBM3", "H100 SXM"),
    "h100-pcie": ("H100 PCIe",),
    "h100-nvl": ("H100 NVL",),
    "h200": ("H200",),
    "a100-sxm-80gb": ("A100-SXM4-80GB", "A100 80GB SXM", "A100-SXM-80GB"),
    "a100-sxm-40gb": ("A100-SXM4-40GB", "A100-SXM-40GB"),
    "a100-pcie-80gb": ("A100 80GB PCIe", "A100-PCIE-80GB"),
    "l40s": ("L40S",),
    "l4": ("NVIDIA L4",),
    "a10g": ("A10G",),
    "b200": ("B200",),
    "gb200": ("GB200",),
    "rtx-4090": ("RTX 4090",),
}


@dataclass
class DeviceInfo:
    """What the run knows about its device; every field that NVML would give is None without it."""

    kind: str  # "cuda" or "cpu"
    name: str
    index: int = 0
    count: int = 1
    memory_bytes: int | None = None
    driver_version: str | None = None
    cuda_version: str | None = None
    torch_version: str | None = None
    compute_capability: tuple[int, int] | None = None
    l2_bytes: int | None = None
    power_limit_w: float | None = None
    temperature_c: float | None = None
    clocks_hz: dict[str, float] = field(default_factory=dict)
    nvml_note: str = ""

    @property
    def slug(self) -> str:
        """A folder name: 'nvidia-h100-80gb-hbm3', 'cpu-x86-64'."""
        base = self.name if self.kind == "cuda" else f"cpu-{platform.machine() or 'unknown'}"
        return re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-") or "device"

    def as_dict(self) -> dict:
        d = asdict(self)
        d["slug"] = self.slug
        return d


def _nvml():
    """The pynvml module, initialised; raises RuntimeError with one line when unavailable."""
    try:
        import pynvml
    except ImportError:
        raise RuntimeError("pynvml is not installed (pip install nvidia-ml-py); clocks and throttling are not recorded") from None
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001  NVMLError_LibraryNotFound, DriverNotLoaded, ...
        raise RuntimeError(f"NVML is unavailable ({exc.__class__.__name__}: {exc}); no NVIDIA driver? "
                           "clocks and throttling are not recorded") from None
    return pynvml


def _text(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def nvml_facts(index: int = 0) -> dict:
    """Name, memory, driver, clocks, power limit and temperature of GPU `index` from NVML."""
    nv = _nvml()
    h = nv.nvmlDeviceGetHandleByIndex(index)
    facts = {
        "name": _text(nv.nvmlDeviceGetName(h)),
        "memory_bytes": int(nv.nvmlDeviceGetMemoryInfo(h).total),
        "driver_version": _text(nv.nvmlSystemGetDriverVersion()),
    }
    clocks = {}
    for label, kind in (("sm", nv.NVML_CLOCK_SM), ("memory", nv.NVML_CLOCK_MEM)):
        for when, fn in (("current", nv.nvmlDeviceGetClockInfo), ("max", nv.nvmlDeviceGetMaxClockInfo)):
            try:
                clocks[f"{label}_{when}_hz"] = float(fn(h, kind)) * 1e6  # NVML reports MHz
            except Exception:  # noqa: BLE001  some parts do not report every clock
                pass
    facts["clocks_hz"] = clocks
    for key, fn, scale in (("power_limit_w", nv.nvmlDeviceGetEnforcedPowerLimit, 1e-3),
                           ("temperature_c", lambda hh: nv.nvmlDeviceGetTemperature(hh, nv.NVML_TEMPERATURE_GPU), 1.0)):
        try:
            facts[key] = float(fn(h)) * scale
        except Exception:  # noqa: BLE001
            facts[key] = None
    return facts


def throttle_reasons(index: int = 0) -> tuple[str, ...] | None:
    """Active clock-event reasons that hold clocks down (power, thermal, slowdown); None without NVML."""
    try:
        nv = _nvml()
        h = nv.nvmlDeviceGetHandleByIndex(index)
        get = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or nv.nvmlDeviceGetCurrentClocksThrottleReasons
        bits = int(get(h))
    except Exception:  # noqa: BLE001
        return None
    return tuple(name for bit, name in _THROTTLE_BITS.items() if bits & bit and name not in _HARMLESS)


def busy_note(index: int = 0) -> str:
    """One line when other processes are using the GPU (their kernels would slow every benchmark), else ''."""
    try:
        nv = _nvml()
        h = nv.nvmlDeviceGetHandleByIndex(index)
        procs = nv.nvmlDeviceGetComputeRunningProcesses(h)
        util = nv.nvmlDeviceGetUtilizationRates(h).gpu
    except Exception:  # noqa: BLE001
        return ""
    import os

    others = [p for p in procs if p.pid != os.getpid()]
    if others or util > 10:
        return f"GPU busy: {len(others)} other process(es), {util}% utilisation before the run; timings may be slow"
    return ""


def detect() -> DeviceInfo:
    """The device the benchmarks will use: CUDA device 0 when torch sees one, else the CPU."""
    import torch

    if not torch.cuda.is_available():
        info = DeviceInfo(kind="cpu", name=platform.processor() or platform.machine() or "CPU",
                          torch_version=torch.__version__, count=1,
                          nvml_note="no CUDA device (torch.cuda.is_available() is False): benchmarks run on the CPU")
        return info
    props = torch.cuda.get_device_properties(0)
    info = DeviceInfo(
        kind="cuda", name=props.name, count=torch.cuda.device_count(), memory_bytes=int(props.total_memory),
        cuda_version=torch.version.cuda, torch_version=torch.__version__,
        compute_capability=(props.major, props.minor), l2_bytes=int(getattr(props, "L2_cache_size", 0)) or None,
    )
    try:
        facts = nvml_facts(0)
    except RuntimeError as exc:
        info.nvml_note = str(exc)
        return info
    for k, v in facts.items():
        setattr(info, k, v)
    return info


def match_profile(info: DeviceInfo) -> tuple[str | None, str]:
    """(profile id, note): the shipped profile of this device, or None and why not."""
    if info.kind != "cuda":
        return None, f"{info.name} is a CPU; no shipped hardware profile describes it"
    from roofline.registry import list_hardware, load_hardware

    name = info.name.upper()
    hits = []
    for pid in list_hardware():
        aliases = _NAME_ALIASES.get(pid, ())
        if any(a.upper() in name for a in aliases):
            hits.append(pid)
    if not hits:
        return None, f"no shipped profile matches {info.name!r}; give --profile ID to compare against one"
    if info.memory_bytes:
        def gap(pid):
            return abs(load_hardware(pid).memory_bytes - info.memory_bytes) / load_hardware(pid).memory_bytes
        hits.sort(key=gap)
        # torch's total_memory is ~0.6% under the NVML total the profiles store
        if gap(hits[0]) > 0.03:
            return None, (f"{info.name} has {info.memory_bytes / 1e9:.1f} GB, {hits[0]} lists "
                          f"{load_hardware(hits[0]).memory_bytes / 1e9:.1f} GB; give --profile ID to compare anyway")
    return hits[0], f"{info.name} matches {hits[0]}"


def warm_up(max_s: float = 20.0, window_s: float = 0.5, tolerance: float = 0.01, size: int = 8192) -> dict:
    """Run bf16 GEMMs of size^3 until the clocks are steady, before the first benchmark; what was seen.

    An idle GPU sits at a low SM clock (345 MHz on an H200 of this project's device pool) and
    ramps up under load; the first benchmarks would otherwise run on a rising clock. Steady: the
    achieved rate of three consecutive windows of `window_s` agrees within `tolerance`; the loop
    stops there or after `max_s`. Returns the rate and SM clock of each window and whether it
    settled. On a CPU nothing runs (`skipped`).
    """
    import time

    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    flops = 2.0 * size**3
    rates, clocks = [], []
    t_start = time.perf_counter()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    n = 4
    steady = False
    while time.perf_counter() - t_start < max_s:
        start.record()
        for _ in range(n):
            torch.mm(a, b)
        end.record()
        end.synchronize()
        dt = start.elapsed_time(end) * 1e-3
        rates.append(flops * n / dt)
        try:
            clocks.append(nvml_facts(0)["clocks_hz"].get("sm_current_hz"))
        except RuntimeError:
            clocks.append(None)
        n = max(1, int(n * window_s / max(dt, 1e-6)))
        last = rates[-3:]
        if len(rates) >= 4 and max(last) / min(last) - 1 < tolerance:
            steady = True
            break
    del a, b
    torch.cuda.empty_cache()
    return {"seconds": time.perf_counter() - t_start, "steady": steady, "gemm": f"bf16 {size}^3",
            "rates_flops_per_s": rates, "sm_clock_hz": clocks}
