"""`roofline networks`: the shipped scale-out network profiles (what a replica wider than one node uses)."""

from __future__ import annotations

import json

from .. import fmt
from ..network import DEFAULT_NETWORK, list_networks, load_network

HELP = "list the shipped scale-out network profiles (plan --network, Deployment.network)"
DESCRIPTION = ("The links between nodes when a replica outgrows one NVLink domain: bandwidth per GPU each way, latency per "
               "hop of a collective, and the fraction of line rate collectives achieve. The default is marked.")


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="every profile, as JSON (a list, SI units)")


def run(a) -> str:
    ids = list_networks()
    nets = [load_network(i) for i in ids]
    if a.json:
        return json.dumps([{"id": i, "default": i == DEFAULT_NETWORK, **n.model_dump()} for i, n in zip(ids, nets)], indent=2)
    rows = [[i + (" (default)" if i == DEFAULT_NETWORK else ""), n.name, fmt.rate(n.bytes_per_s_per_gpu_per_direction, "B/s"),
             fmt.rate(n.bytes_per_s_per_gpu_per_direction * 8, "b/s"), fmt.seconds(n.latency_s), fmt.fraction(n.bandwidth_fraction),
             fmt.rate(n.bytes_per_s_per_gpu_per_direction * n.bandwidth_fraction, "B/s")] for i, n in zip(ids, nets)]
    return fmt.table(["id", "network", "per GPU/direction", "line rate", "latency/hop", "achieved", "effective/GPU"], rows)
