"""Disaggregated serving: a prefill pool and a decode pool sized apart, the prompt's KV cache moved between them.

Planning code above `plan` (it sizes each pool with the planner's root finder and compares the result with
the planner's co-located fleet), on the steady-state curves of `serving`.
"""

import math
from dataclasses import replace

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from . import ops as O
from .engine import usd_per_million_tokens
from .errors import SpecError, renamed
from .hardware import HardwareProfile
from .plan import SLO, SearchSpace, max_rate, parallelisms, plan_fleet, slack
from .serving import check_traffic, curves_for, load_pair
from .specs import ModelSpec
from .workload import Deployment


def kv_transfer_s(model: ModelSpec, hw: HardwareProfile, prefill: Deployment, decode: Deployment, prompt_tokens,
                  link_bytes_per_s: float | None = None):
    """Time to move a prompt's KV cache from the prefill to the decode pool:
    S · KV bytes/token (all layers, the decode pool's KV format) / link + one link latency.

    The link, unless given: inside one scale-up domain (prefill tp + decode tp ≤ its GPUs) the GPU link
    (NVLink), otherwise each GPU's host link (PCIe/C2C: GPUDirect RDMA to the NIC goes through it);
    in both cases min(lanes of prefill, lanes of decode) shards move in parallel at the achievable fraction, a
    deployment's lanes tp·pp (each stage holds its layers' KV, each tp rank its heads), or pp where attention runs
    data-parallel (with ep, tp is 1; under `attention_dp` a prompt's KV, every head of it, sits on one rank of each stage).
    """
    rd = decode.resolved(model)
    per_token = float(O.kv_cache_bytes(model, rd, 1, 1, 1))
    lanes = min((1 if d.attention_dp else d.tp) * d.pp for d in (prefill, decode))
    frac = hw.efficiency.interconnect_bandwidth_fraction
    if link_bytes_per_s is None:
        same = prefill.gpus_per_replica + decode.gpus_per_replica <= hw.interconnect.max_gpus
        link_bytes_per_s = lanes * frac * (hw.interconnect.bytes_per_s_per_direction if same else hw.host_link_bytes_per_s_per_direction)
    elif not link_bytes_per_s > 0:
        raise SpecError("kv_link_bytes_per_s", f"must be positive, got {link_bytes_per_s!r}")
    return np.asarray(prompt_tokens, float) * per_token / link_bytes_per_s + hw.interconnect.latency_s


class DisaggregatedPlan(BaseModel):
    """Separate prefill and decode pools sized to a traffic and its SLOs, beside the co-located fleet."""

    model_config = ConfigDict(frozen=True)
    model: str
    hardware: str
    feasible: bool
    reason: str
    prefill_tp: int
    decode_tp: int
    prefill_pp: int = 1
    decode_pp: int = 1
    prefill_gpus_per_replica: int = Field(description="tp x pp x ep of a prefill replica")
    decode_gpus_per_replica: int = Field(description="tp x pp x ep of a decode replica")
    prefill_replicas: int
    decode_replicas: int
    gpus: int
    kv_transfer_mean_s: float
    ttft_at_slo_percentile_s: float
    tpot_s: float
    decode_batch_size: float
    usd_per_hour: float
    usd_per_million_output_tokens: float
    colocated_gpus: float = Field(description="GPUs of the cheapest co-located fleet at the decode tp (NaN if none meets the SLOs)")
    colocated_usd_per_hour: float

    ttft_at_percentile_s = renamed("ttft_at_percentile_s", "ttft_at_slo_percentile_s")  # its name before issue 11's one-spelling rename


def _decode_pool(m, hw, dep: Deployment, traffic, lam: float, tpot_slo_s: float):
    """(curves, largest rate per replica meeting the TPOT SLO, replicas for λ) of one decode-pool shape;
    replicas 0 when it does not fit or misses the SLO even at batch 1."""
    cd = curves_for(m, hw, dep, traffic, None, decode_only=True)
    ld = max_rate(cd, lambda st: slack(tpot_slo_s, st.tpot_s), cd.capacity)[0] if cd.fits[0] else 0.0
    return cd, ld, (math.ceil(lam / ld - 1e-9) if ld > 0 else 0)


def _prefill_pool(m, hw, dep: Deployment, decode: Deployment, traffic, lam: float, ttft_slo_s: float, q: float, kv_link):
    """(curves, KV transfer per prompt length, largest rate per replica meeting the TTFT SLO, replicas) of one
    prefill-pool shape feeding `decode`; replicas 0 when it does not fit or misses the SLO with no queue."""
    cp = curves_for(m, hw, dep, traffic, None, prefill_only=True)
    kv = kv_transfer_s(m, hw, dep, decode, traffic.prompt_tokens.support()[0], kv_link)[None, :]
    if not cp.fits[0]:
        return cp, kv, 0.0, 0
    # prefill pool: no decode steps on it, so no residual step and no decode interference
    pre_ok = lambda st: np.where(st.utilization < 1, slack(1 - q, cp.ttft_tail(  # noqa: E731
        replace(st, residual_s=np.zeros_like(st.residual_s)), ttft_slo_s, kv)), -1.0)
    cap_p = cp.servers / (cp.x_pre[0] * cp.s_p).sum()
    lp = max_rate(cp, pre_ok, np.array([cap_p]), on_grid=False)[0]  # the prefill pool's rates are not on the colocated grid
    return cp, kv, lp, (math.ceil(lam / lp - 1e-9) if lp > 0 else 0)


def _cheapest(candidates: list[Deployment], size) -> tuple[Deployment, tuple]:
    """The shape whose pool needs the fewest GPUs (replicas x GPUs per replica; then the smaller replica),
    with `size(dep)`'s result (replicas last); the first candidate's when none works (replicas 0)."""
    best = None
    for dep in candidates:
        r = size(dep)
        n = r[-1]
        if n > 0 and (best is None or (n * dep.gpus_per_replica, dep.gpus_per_replica) < (best[1][-1] * best[0].gpus_per_replica, best[0].gpus_per_replica)):
            best = (dep, r)
    return best if best is not None else (candidates[0], size(candidates[0]))


def disaggregate(model, hardware, requests_per_s: float, prompt_tokens, output_tokens, ttft_slo_s: float, tpot_slo_s: float,
                 prefill: Deployment | None = None, decode: Deployment | None = None, ttft_percentile: float = 0.9,
                 kv_link_bytes_per_s: float | None = None) -> DisaggregatedPlan:
    """Size a prefill pool and a decode pool for `requests_per_s`.

    Prefill replica: an M/G/1 server with service X(S) (a prefill pass alone); TTFT = W + X(S) + KV transfer
    (`kv_transfer_s`, not overlapped with the prefill). Decode replica: decode-only steps t0(B) with
    B = λ E[O-1] t0 (Little), TPOT = t0. Each pool gets the fewest replicas whose per-replica rate meets
    its SLO (found by root finding on the rate, `plan.max_rate`, both figures rising with it). The co-located figure is
    `plan`'s sizing of the decode deployment with whole-prompt prefill.

    A pool left as None is searched: every replica shape `plan.parallelisms` allows on the device (tp inside
    the NVLink domain x pp stages, ep for MoE), native precision; the shape whose pool needs the fewest GPUs wins.
    The decode pool is chosen first (its TPOT does not depend on the prefill pool), then the prefill pool
    against it (the KV transfer depends on both shapes).
    """
    m, hw = load_pair(model, hardware)
    traffic = check_traffic(m, requests_per_s, prompt_tokens, output_tokens, None)
    slo = SLO(ttft_slo_s, tpot_slo_s, ttft_percentile)
    p, o = traffic.prompt_tokens, traffic.output_tokens
    lam = float(requests_per_s)
    shapes = [Deployment(tp=tp, pp=pp, ep=ep) for tp, pp, ep in parallelisms(m, hw)] or [Deployment()]
    searched = {"prefill": prefill is None and len(shapes) > 1, "decode": decode is None and len(shapes) > 1}
    decode, (cd, ld, n_d) = _cheapest([decode] if decode is not None else shapes,
                                      lambda d: _decode_pool(m, hw, d, traffic, lam, tpot_slo_s))
    prefill, (cp, kv, lp, n_p) = _cheapest([prefill] if prefill is not None else shapes,
                                           lambda d: _prefill_pool(m, hw, d, decode, traffic, lam, ttft_slo_s, ttft_percentile,
                                                                   kv_link_bytes_per_s))
    colo = plan_fleet(m, traffic, slo, SearchSpace(hardware=[hw], tps=[decode.tp], pps=[decode.pp], eps=[decode.ep],
                                                   network=decode.network, precisions={"as given": decode}, best_only=True))
    colo_row = colo.iloc[0]
    base = dict(model=m.name, hardware=hw.name, prefill_tp=prefill.tp, decode_tp=decode.tp, prefill_pp=prefill.pp,
                decode_pp=decode.pp, prefill_gpus_per_replica=prefill.gpus_per_replica, decode_gpus_per_replica=decode.gpus_per_replica,
                kv_transfer_mean_s=float((kv[0] * p.support()[1]).sum()),
                colocated_gpus=float(colo_row["gpus"]) if colo_row["feasible"] else math.nan,
                colocated_usd_per_hour=float(colo_row["usd_per_hour"]) if colo_row["feasible"] else math.nan)
    if n_p == 0 or n_d == 0:
        pool = "decode" if n_d == 0 else "prefill"
        fits = cd.fits[0] if pool == "decode" else cp.fits[0]
        why = (f"{pool} pool does not fit" if not fits
               else "TPOT SLO missed even at batch 1" if pool == "decode" else "TTFT SLO missed even with no queue (prefill + KV transfer)")
        if searched[pool]:
            why += f" with any replica shape (tp x pp{' or ep' if m.moe else ''}) on {hw.name}"
        nan = math.nan
        return DisaggregatedPlan(**base, feasible=False, reason=why, prefill_replicas=0, decode_replicas=0, gpus=0,
                                 ttft_at_slo_percentile_s=nan, tpot_s=nan, decode_batch_size=nan, usd_per_hour=nan,
                                 usd_per_million_output_tokens=nan)
    sp, sd = cp.state(np.array([lam / n_p])), cd.state(np.array([lam / n_d]))
    sp = replace(sp, residual_s=0 * sp.residual_s)
    gpus = n_p * prefill.gpus_per_replica + n_d * decode.gpus_per_replica
    hour = gpus * hw.price_usd_per_gpu_hour
    return DisaggregatedPlan(**base, feasible=True, reason="", prefill_replicas=n_p, decode_replicas=n_d, gpus=gpus,
                             ttft_at_slo_percentile_s=float(cp.ttft_percentile(sp, ttft_percentile, kv)[0]),
                             tpot_s=float(sd.tpot_s[0]), decode_batch_size=float(sd.batch_size[0]),
                             usd_per_hour=hour, usd_per_million_output_tokens=usd_per_million_tokens(hour, lam * o.mean_tokens))
