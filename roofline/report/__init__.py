"""The procurement report: which accelerator serves a given traffic within its latency SLOs, and at what cost.

A `Scenario` (YAML) names the models, the candidate hardware, the traffic (requests/s, prompt and
output tokens per request), the SLOs and the number formats. For every (model, hardware) pair,
`evaluate_option` finds one operating point, using only `predict` and `predict_fitting`:

1. **GPUs per replica** (tp): the smallest tensor-parallel degree whose memory holds the model at
   batch 1 (`predict_fitting`). None fits: "does not fit even at the largest tp". When batch 1
   misses an SLO at that tp, the next larger valid tp that meets both at batch 1 is taken instead
   (and the note says so); none does: the option is infeasible, bound by that SLO.
2. **Batch size**: the largest static batch b <= min(max batch that fits at that tp, the scenario's
   cap) whose TTFT <= ttft_slo_s and mean TPOT <= tpot_slo_s. Both latencies grow with the batch,
   so the search is a bisection over b, each probe one `predict` call. Tokens/s is not monotone in b
   (the tile sawtooth, `roofline.roofline`): when the last multiple of the GEMM or dequantization tile
   below b serves more tokens/s, that batch is taken instead and the note says so.
3. **Binding constraint**: what stops b + 1. "memory" (b + 1 does not fit), "batch cap",
   "TTFT SLO" or "TPOT SLO" (b + 1 misses it). Batch 1 already missing an SLO makes the option
   infeasible, with that SLO as its binding constraint.
4. **Fleet**: output tokens/s of one replica = b * output / e2e latency (`Prediction.output_tokens_per_s`);
   replicas = ceil(requests_per_s * output_tokens / that); GPUs = replicas * tp;
   $/hour = GPUs * price per GPU-hour. $/million output tokens is that fleet's cost per hour over
   the output tokens it is asked for per hour (the idle headroom of the last replica included);
   `Prediction.cost_per_million_output_tokens_usd` (one replica at full load) is kept beside it.
5. **Rank**: feasible options by fleet $/million output tokens; infeasible ones after them, unranked.
   The report states the prices at which the top two swap (`swap_price`: $/M is linear in the price,
   so the top device's swap price is its price x M_2 / M_1).

Steps 1-5 are the **static-batch** model (`serving: static`): each replica runs batches of b
requests from prefill to the last token, and a request's TTFT is the prefill of its whole batch.

The default, `serving: continuous`, answers with the capacity planner instead (`roofline.plan`, the
same call as `roofline plan`): continuous batching in steady state with Poisson arrivals, TTFT at
`ttft_percentile` (an M/G/1 prefill queue), mean TPOT, and every replica shape (tp x pp, ep for MoE,
across nodes when one is not enough) in the scenario's number formats; per hardware the cheapest
fleet that meets the SLOs. `batch_size` is then the mean decode batch (Little's law) and
`max_batch_size_fits` the most memory holds. An unset SLO is no constraint (`NO_SLO_S`).

Three modules: `scenario` (the input), `options` (steps 1-5 and the planner mode; the ranked table) and
`render` (HTML, Markdown, CSV, assumptions). `write_report` writes report.html (self-contained: inline CSS and SVG, no scripts, no external
resources), report.md and report.csv (SI units in column names), each atomically, and states its
assumptions inside: efficiency fractions and their source kind, prices and their dates, the runtime
memory reserve, the simulator version, and the scenario itself as YAML.
"""

from __future__ import annotations

from .options import COLUMNS, Option, Progress, SwapPrice, evaluate_option, evaluate_scenario, planned_options, rank_options, swap_price  # noqa: F401
from .render import WrittenReport, assumptions, render_csv, render_html, render_markdown, simulator_version, swap_text, top_option_text, write_report  # noqa: F401
from .scenario import BATCH_CAP, DEFAULT_SCENARIO, MEMORY, NO_FIT, NO_SLO_S, TPOT_SLO, TTFT_SLO, UNSUPPORTED, Scenario  # noqa: F401

compare = evaluate_scenario  # its name before issue 11 (`roofline.compare.compare` is the what-if table)

__all__ = ["Scenario", "Option", "evaluate_option", "rank_options", "evaluate_scenario", "compare", "write_report", "WrittenReport",
           "render_html", "render_markdown", "render_csv", "top_option_text", "simulator_version", "SwapPrice", "swap_price", "swap_text"]
