"""Energy per output token from each operator's utilization and the device's power figures.

The power model (one formula, `power_w`)
----------------------------------------
A GPU running an operator at utilization u in [0, 1] draws

    P(u) = P_idle + (TDP - P_idle) · u                       (`HardwareProfile.idle_power_w`, `tdp_w`)

where u is the utilization of the resource the operator is bound by, at the datasheet peaks:
u = max(F / (t · peak FLOP/s), B / (t · peak bytes/s)) over the operator's realistic time t (the
MFU-like and MBU-like fractions of that one operator). Its energy is then

    P(u) · t = P_idle · t + (TDP - P_idle) · t_busy,    t_busy = u · t = max(F / peak FLOP/s, B / peak bytes/s),

the operator's speed-of-light time (`roofline.time_ops` against the floor ceilings: max of its compute
and memory terms; vector-unit dequantization counts as compute). Time in a phase that no operator
fills (pipeline bubbles and hand-offs, collectives, launch gaps) runs at u = 0. A phase of T seconds
on one GPU therefore uses

    E = P_idle · T + (TDP - P_idle) · Σ_ops t_busy                                       (`energy_j`)

and a replica of G GPUs G times that (every GPU of a replica runs the same per-GPU table). Interconnect
and host-link power, the CPU, fans and the rest of the server are not modelled: the figures are the
GPUs' board energy. kWh per million output tokens = J/token · 10⁶ / 3.6·10⁶.

Worked number (tests/test_energy.py): a 100 W-TDP, 20 W-idle device busy 0.5 s in a 2 s phase uses
20 · 2 + 80 · 0.5 = 80 J, i.e. the mean power 40 W = P(0.25).

Static batch (`static_energy`): T = TTFT for prefill and (e2e - TTFT) for the decode steps, t_busy
summed over every operator (decode: over every step, exactly, with the closed-form step sums of
`engine.DecodeSteps`), times the micro-batches a pipeline stage runs. With speculative decoding the
decode busy time is the per-token FLOPs and bytes taken as one operator (max of their two terms).

Serving (`serving_energy_per_output_token_j`): a replica serving R output tokens/s with its G GPUs
uses G · P_idle watts plus (TDP - P_idle) times its busy GPU-seconds per second; busy GPU-seconds per
output token = (G / pp) · [t_busy(prefill of the mean prompt) + (Ō - 1) · t_busy(decode step of the
mean batch B at the mean context) / B] / Ō.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import ops as O
from .engine import DecodeSteps, Evaluation, microbatches
from .hardware import HardwareProfile
from .roofline import Ceilings, OpTable, Timing, time_ops
from .specs import ModelSpec
from .units import SECONDS_PER_HOUR
from .workload import Deployment, ResolvedDeployment

JOULES_PER_KWH = 1000 * SECONDS_PER_HOUR


def power_w(utilization, idle_w, tdp_w):
    """P(u) = P_idle + (TDP - P_idle) · u, u clipped to [0, 1]: the one power formula."""
    return idle_w + (tdp_w - idle_w) * _clip_unit(utilization)


def _clip_unit(u):
    """u clipped to [0, 1] (np.clip; a plain float, one scenario's, with min and max: the same value, NaN kept)."""
    if isinstance(u, float):
        return min(max(u, 0.0), 1.0)
    return np.clip(u, 0.0, 1.0)


def energy_j(time_s, busy_s, idle_w, tdp_w):
    """Energy of one GPU over a phase of `time_s` seconds with `busy_s` speed-of-light seconds of work in it:
    P(busy / time) · time = P_idle · T + (TDP - P_idle) · busy (0 for an empty phase). One scenario's (two numbers)
    is taken in plain floats, a grid's in arrays: the same operations in float64."""
    if _single(time_s) and _single(busy_s):
        time_s = float(time_s)
        u = float(busy_s) / time_s if time_s > 0 else 0.0
    else:
        time_s = np.asarray(time_s, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.where(time_s > 0, np.asarray(busy_s) / np.where(time_s > 0, time_s, 1.0), 0.0)
    return power_w(u, idle_w, tdp_w) * time_s


def _single(x) -> bool:
    """np.ndim(x) == 0, a Python or numpy number answered without numpy's call."""
    return isinstance(x, (float, int)) or np.ndim(x) == 0


def kwh_per_million(j_per_token):
    """J per token -> kWh per million tokens: · 10⁶ / 3.6·10⁶."""
    return j_per_token * 1e6 / JOULES_PER_KWH


def busy_s(floor: Timing):
    """Σ_ops max(compute, memory) of a table timed against the floor ceilings: its speed-of-light seconds."""
    return np.maximum(floor.compute_s, floor.memory_s).sum(axis=0)


def decode_busy_s(steps: DecodeSteps):
    """Σ over every decode step and operator of max(compute, memory), for steps timed against the floor.

    Operators whose cost does not move with the context are summed once and multiplied by the step count;
    the others (attention) are affine in m = min(c, window) and summed in closed form (`sum_over_steps`).
    """
    t = steps.t1
    const = steps.kept("energy.busy_step_s", lambda: np.maximum(t.compute_s, t.memory_s)[~steps.dep].sum(axis=0)) * steps.count
    if not steps.any_dep:
        return const
    return const + steps.dep_busy_total_s()  # the sums the decode time of these steps was built from


@dataclass(frozen=True)
class StaticEnergy:
    """Energy of one static batch on one replica (joules, all its GPUs) and per output token."""

    prefill_j: float
    decode_j: float
    energy_per_output_token_j: float
    kwh_per_million_output_tokens: float
    mean_power_w_per_gpu: float


def static_energy(r: Evaluation, hw: HardwareProfile, dep: Deployment, batch, output,
                  speculative_peaks: tuple[float, float] | None = None) -> StaticEnergy:
    """Prefill and decode energy of the static batch `r` describes (module docstring), on `dep.gpus_per_replica` GPUs.

    A pipeline stage runs `engine.microbatches` passes of its table per phase. `speculative_peaks` =
    (peak FLOP/s, peak bytes/s) when `r` comes from speculative decoding (its decode tables are the
    target's alone). With prefix caching the full prompt's prefill busy time is scaled by the TTFT
    floor over the full prompt's floor (hits and misses are taken to be equally busy per floor second).
    """
    idle, tdp = hw.idle_power_w, hw.tdp_w
    mb = microbatches(dep, batch)
    pre_floor = r.prefill.floor
    pre_busy = mb * pre_floor.kept("energy.busy_s", lambda: busy_s(pre_floor))
    if dep.prefix_hit_rate > 0:
        full_floor = (mb + dep.pp - 1) * pre_floor.time_s.sum(axis=0)
        pre_busy = pre_busy * r.ttft_floor_s / full_floor
    steps = max(int(output) - 1, 0)
    if steps == 0:
        dec_busy = 0.0
    elif speculative_peaks is not None:
        peak_flops, peak_bw = speculative_peaks
        dec_busy = steps * max(r.decode_flops_per_step / peak_flops, r.decode_bytes_per_step / peak_bw)
    else:
        dec_busy = mb * decode_busy_s(r.decode.floor)
    gpus = dep.gpus_per_replica
    prefill = gpus * float(energy_j(r.ttft_s, pre_busy, idle, tdp))
    decode = gpus * float(energy_j(r.e2e_latency_s - r.ttft_s, dec_busy, idle, tdp))
    per_token = (prefill + decode) / (batch * output)
    return StaticEnergy(prefill_j=prefill, decode_j=decode, energy_per_output_token_j=per_token,
                        kwh_per_million_output_tokens=float(kwh_per_million(per_token)),
                        mean_power_w_per_gpu=(prefill + decode) / gpus / float(r.e2e_latency_s))


def serving_energy_per_output_token_j(model: ModelSpec, rd: ResolvedDeployment, hw: HardwareProfile, tp: int,
                                      batch: float, prompt_tokens: float, context_tokens: float, output_tokens: float,
                                      output_tokens_per_s: float, num_gpus: int) -> float:
    """J per output token of one replica in steady state (module docstring, "Serving").

    `batch`, `prompt_tokens`, `context_tokens` and `output_tokens` are means (a decode step runs at least
    one sequence); `output_tokens_per_s` is the replica's output rate.
    """
    dep = rd.dep
    floor = Ceilings.of(hw, rd.compute_key, floor=True)
    b = max(float(batch), 1.0)
    s = max(int(round(prompt_tokens)), 1)
    past = max(int(round(context_tokens)) - 1, 0)
    pre = busy_s(time_ops(OpTable.of(O.forward_ops(model, rd, 1, s, 0, tp, mla_absorbed=False, ep=dep.ep), ()), floor, tp))
    step = busy_s(time_ops(OpTable.of(O.forward_ops(model, rd, b, 1, past, tp, mla_absorbed=True, ep=dep.ep), ()), floor, tp))
    o = max(float(output_tokens), 1.0)
    busy_per_token = num_gpus / dep.pp * (float(pre) + (o - 1) * float(step) / b) / o  # GPU-seconds
    u = busy_per_token * output_tokens_per_s / num_gpus  # mean utilization of the replica's GPUs
    return float(num_gpus * power_w(u, hw.idle_power_w, hw.tdp_w) / output_tokens_per_s)


def fleet_energy_per_output_token_j(replicas: int, replica_gpus: int, idle_w: float, replica_power_w_per_gpu: float,
                                    replica_tokens_per_s: float, demanded_tokens_per_s: float) -> float:
    """J per output token of a fleet of static-batch replicas asked for fewer tokens than it can make.

    The fleet's busy share is demanded / (replicas · a replica's rate): that many replica-seconds per
    second run at the replica's mean power, the rest idle at P_idle:
    P_fleet = replicas · G · P_idle + (demanded / rate) · G · (P_replica - P_idle); J/token = P_fleet / demanded.
    """
    busy_replicas = demanded_tokens_per_s / replica_tokens_per_s
    fleet_w = replicas * replica_gpus * idle_w + busy_replicas * replica_gpus * (replica_power_w_per_gpu - idle_w)
    return fleet_w / demanded_tokens_per_s

