"""Scale-out networks: the links between nodes when a replica outgrows one NVLink domain.

A network is a property of the cluster, not of the GPU, so it is a profile of its own
(`hardware_profiles/networks/*.yaml`), chosen by `Deployment.network`. Collectives whose
group spans nodes run at the slowest link they cross (standard ring and all-to-all
formulas, `roofline.roofline`):

    ring all-reduce over p GPUs:  2(p-1)/p · bytes / (network bandwidth · fraction) + 2(p-1) · network latency

A pipeline stage hand-off that crosses nodes takes latency + bytes / network bandwidth.
"""

import functools
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from .errors import NumbersAreNumbers, SpecError
from .hardware import MAX_BANDWIDTH_BYTES_PER_S, MAX_LATENCY_S
from .registry import load_profile, profile_ids

DEFAULT_NETWORK = "ib-ndr-400"


class NetworkProfile(NumbersAreNumbers):
    """One GPU's share of the scale-out network. Bytes per second each way, seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    name: str = Field(min_length=1)
    bytes_per_s_per_gpu_per_direction: float = Field(gt=0, lt=MAX_BANDWIDTH_BYTES_PER_S, description="scale-out bandwidth one GPU gets, one direction")
    latency_s: float = Field(ge=0, le=MAX_LATENCY_S, description="per hop of a collective between nodes")
    bandwidth_fraction: float = Field(gt=0, le=1, description="achieved / line rate of NCCL collectives over it")
    sources: dict[Literal["bytes_per_s_per_gpu_per_direction", "latency_s", "bandwidth_fraction"], str]

    @model_validator(mode="after")
    def _check(self) -> "NetworkProfile":
        missing = {"bytes_per_s_per_gpu_per_direction", "latency_s", "bandwidth_fraction"} - set(self.sources)
        if missing:
            raise SpecError("sources", f"no source for {', '.join(sorted(missing))}")
        return self


def list_networks() -> list[str]:
    """Ids of the shipped scale-out network profiles."""
    return profile_ids("networks")


@functools.lru_cache(maxsize=None)
def load_network(network_id: str) -> NetworkProfile:
    """A shipped network profile by id; an unknown id is a one-line error listing the choices."""
    return load_profile("networks", network_id, NetworkProfile, "network")
