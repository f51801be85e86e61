"""The procurement report: which accelerator serves a given traffic within its latency SLOs, and at what cost.

A `Scenario` (YAML) names the models, the candidate hardware, the traffic (requests/s, prompt and
output tokens per request), the SLOs and the number formats. Every option comes from the capacity planner
(`roofline.plan`, the same call as `roofline plan`), one call per model, in the scenario's serving mode:

* `serving: continuous` (the default): continuous batching in steady state with Poisson arrivals, TTFT at
  `ttft_percentile` (an M/G/1 prefill queue), mean TPOT, every replica shape (tp x pp, ep for MoE, across
  nodes when one is not enough); `batch_size` is the mean decode batch (Little's law) and
  `max_batch_size_fits` the most memory holds.
* `serving: static`: each replica runs batches of b requests from prefill to the last token, and a
  request's TTFT is the prefill of its whole batch; every tp inside one node, each at the largest b within
  memory, the batch cap and the SLOs (a bisection over `predict`; the tile sawtooth taken into account).

Options are ranked by fleet $/million output tokens (`plan.rank`); the report states the prices at which the top two
swap (`swap_price`: $/M is linear in the price, so the top device's swap price is its price x M_2 / M_1), and each
option's fleet energy in kWh per million output tokens (`roofline.energy`).

Per hardware the cheapest fleet that meets the SLOs (or the option closest to feasible, with its reason);
the options of all models are put in the planner's order (`plan.rank`: feasible first, cheapest fleet
first). Replicas = ceil(demand / the largest load one replica takes within the SLOs); GPUs = replicas x
GPUs per replica; $/hour = GPUs x price per GPU-hour; $/million output tokens is that fleet's cost over the
output tokens it is asked for (idle headroom included), and 'at full load' one replica at its largest
stable rate beside it. An unset SLO is no constraint (`NO_SLO_S`).

Three modules: `scenario` (the input), `options` (the planner's frames, joined and ranked, in the report's columns) and
`render` (HTML, Markdown, CSV, assumptions). `write_report` writes report.html (self-contained: inline CSS and SVG, no scripts, no external
resources), report.md and report.csv (SI units in column names), each atomically, and states its
assumptions inside: efficiency fractions and their source kind, prices and their dates, the runtime
memory reserve, the simulator version, and the scenario itself as YAML.
"""

from __future__ import annotations

import warnings

from .options import COLUMNS, Progress, SwapPrice, evaluate_scenario, planned, report_columns, swap_price  # noqa: F401
from .render import WrittenReport, assumptions, render_csv, render_html, render_markdown, simulator_version, swap_text, top_option_text, write_report  # noqa: F401
from .scenario import BATCH_CAP, DEFAULT_SCENARIO, MEMORY, NO_SLO_S, TPOT_SLO, TTFT_SLO, UNSUPPORTED, Scenario  # noqa: F401

__all__ = ["Scenario", "evaluate_scenario", "write_report", "WrittenReport",
           "render_html", "render_markdown", "render_csv", "top_option_text", "simulator_version", "SwapPrice", "swap_price", "swap_text"]


def __getattr__(name: str):
    """`report.compare`, the old name of `evaluate_scenario`, warns: `roofline.compare` is the what-if table."""
    if name == "compare":
        warnings.warn("roofline.report.compare is renamed evaluate_scenario (roofline.compare is the what-if table)",
                      DeprecationWarning, stacklevel=2)
        return evaluate_scenario
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
