"""All-reduce time by algorithm and topology: the fastest of what the engine and the device offer.

A tensor-parallel all-reduce sums an S-byte message held by each of p GPUs and leaves the sum on
every one. Each GPU must receive the (p−1)/p of the result its peers decide, so no algorithm beats
(p−1)/p · S over its link; they differ in how many bytes cross it and in how many synchronised
steps (each a fixed cost α) they take. Here `C` is the bytes of all the op's all-reduces together
(`messages` of them, so S = C / messages) and `link` is the bandwidth one GPU of the group has into
the others, times its achievable fraction:

    one-shot   (p−1) · C / link              + messages · α        each GPU reads its p−1 peers' buffers
    two-shot   2(p−1)/p · C / link           + 2 · messages · α    reduce-scatter, then all-gather
    ring       2(p−1)/p · C / link           + 2(p−1) · messages · α_hop   NCCL's ring: 2(p−1) hops
    NVLS       C / (link_raw · f_nvls)       + 2 · messages · α    in-switch reduction (NVLink SHARP)

α (`Interconnect.custom_allreduce_latency_s`) is the fixed time of one step of the engine's own
(custom) all-reduce, read from its kernel tables; α_hop (`Interconnect.latency_s`) is NCCL's per-hop
latency. A device without a custom all-reduce (PCIe cards, where engines fall back to NCCL) has the
ring only. Worked numbers, H100 SXM at tp 8 (link 450 GB/s · 0.82 = 369 GB/s, α = 4.6 µs,
α_hop = 1.8 µs), one decode all-reduce of 64 tokens · 8192 · 2 bytes = 1 MiB:
one-shot 7 · 1,048,576 / 369e9 + 4.6 µs = 24.5 µs; two-shot 1.75 · 1,048,576 / 369e9 + 9.2 µs = 14.2 µs;
ring 5.0 + 25.2 = 30.2 µs; the engine's measured kernel takes 15.0 µs (vLLM 0.24.0 table).

**NVLS.** With NVLink SHARP each GPU's chunk of the sum is reduced inside the switch as the GPU
loads it (multimem ld_reduce) and broadcast by the switch as the GPU stores it (multimem st): a GPU
sends S and receives S, one crossing each way instead of the ring's 2(p−1)/p. The switch's
reduction rate caps it below the link: `nvls_bandwidth_fraction` is the measured message rate over
the link (8x H200: 482 GB/s bus bandwidth = 482 / 1.75 = 275 GB/s of messages = 0.61 of 450). It
takes two synchronised steps like two-shot (2α).

**Topology.** On an NVSwitch (`switch`) a GPU's whole link reaches every peer: link is the per-GPU
rate whatever p. In a full mesh (`mesh`, MI300X xGMI) each pair has one link of rate r, so a group
of p GPUs has (p−1) · r into the others: a tp-2 group on an MI300X has one 64 GB/s link, not seven.
Behind PCIe (`pcie`) the bytes cross the host fabric (the profile's link and fraction).

A calibrated profile's measured all-reduce of the same group size (`Calibration.allreduce_points`), when
given, replaces all of this: messages · t_m(S), t_m the measured time of one all-reduce of S = C / messages bytes,
interpolated piecewise-linearly between the measured sizes (`calibration.interpolated_message_s`): the measured
kernel switches algorithm with the size, as the comparison of the terms above does.
"""

from __future__ import annotations

import numpy as np

ALGORITHMS = ("one_shot", "two_shot", "ring", "nvls")


def group_link_bytes_per_s(link_bytes_per_s, pair_bytes_per_s, gpus):
    """What one GPU of a p-GPU group can move into the others per second: the per-GPU link on a switch
    (pair rate infinite), (p−1) pair links in a mesh, never more than the per-GPU link."""
    return np.minimum(link_bytes_per_s, np.maximum(np.asarray(gpus, dtype=float) - 1, 1) * pair_bytes_per_s)


def allreduce_times_s(comm_bytes, messages, gpus, link_bytes_per_s, pair_bytes_per_s, hop_latency_s, step_s,
                      nvls_bytes_per_s) -> dict[str, np.ndarray]:
    """Time of each algorithm (see the module docstring) for `messages` all-reduces moving `comm_bytes` in all;
    an algorithm the device lacks (step_s infinite, nvls_bytes_per_s 0) is infinite."""
    p = np.asarray(gpus, dtype=float)
    c = np.asarray(comm_bytes, dtype=float)
    link = group_link_bytes_per_s(link_bytes_per_s, pair_bytes_per_s, p)
    halves = 2 * (p - 1) / np.maximum(p, 1) * c / link
    has_step = np.isfinite(step_s)
    step = np.where(has_step, step_s, 0.0)
    has_nvls = np.asarray(nvls_bytes_per_s) > 0
    nvls_rate = np.where(has_nvls, nvls_bytes_per_s, 1.0)
    return {
        "one_shot": np.where(has_step, (p - 1) * c / link + messages * step, np.inf),
        "two_shot": np.where(has_step, halves + 2 * messages * step, np.inf),
        "ring": halves + 2 * (p - 1) * messages * hop_latency_s,
        "nvls": np.where(has_nvls & has_step, c / nvls_rate + 2 * messages * step, np.inf),
    }


def allreduce_s(comm_bytes, messages, gpus, link_bytes_per_s, pair_bytes_per_s, hop_latency_s, step_s, nvls_bytes_per_s,
                measured_message_s=0.0):
    """The fastest algorithm's time, or messages · t_m where a measured time t_m of one all-reduce of this message
    size (S = C / messages) is given (t_m > 0: `calibration.CalibratedCurves.with_allreduce`)."""
    if np.ndim(step_s) == 0 and not np.isfinite(step_s) and np.ndim(nvls_bytes_per_s) == 0 and nvls_bytes_per_s == 0 \
            and np.ndim(pair_bytes_per_s) == 0 and not np.isfinite(pair_bytes_per_s):
        best = 2 * (gpus - 1) / gpus * comm_bytes / link_bytes_per_s + 2 * (gpus - 1) * messages * hop_latency_s  # ring only
    else:
        times = allreduce_times_s(comm_bytes, messages, gpus, link_bytes_per_s, pair_bytes_per_s, hop_latency_s, step_s,
                                  nvls_bytes_per_s)
        best = np.minimum(np.minimum(times["one_shot"], times["two_shot"]), np.minimum(times["ring"], times["nvls"]))
    if np.ndim(measured_message_s) == 0 and measured_message_s == 0:
        return best
    return np.where(np.asarray(measured_message_s) > 0, messages * measured_message_s, best)


def best_algorithm(comm_bytes, messages, gpus, link_bytes_per_s, pair_bytes_per_s, hop_latency_s, step_s, nvls_bytes_per_s) -> str:
    """Name of the fastest algorithm for one (scalar) case: what an engine would pick."""
    times = allreduce_times_s(comm_bytes, messages, gpus, link_bytes_per_s, pair_bytes_per_s, hop_latency_s, step_s,
                              nvls_bytes_per_s)
    return min(ALGORITHMS, key=lambda a: float(times[a]))
