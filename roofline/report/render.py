"""The report's outputs: report.html (self-contained), report.md and report.csv from the options table,
with the assumptions stated inside; `write_report` writes all three atomically.
"""

from __future__ import annotations

import datetime as _dt
import html
import math
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

from .. import fmt
from ..errors import SpecError
from ..files import write_atomic
from ..hardware import PRICE_BASIS
from ..registry import load_model
from ..workload import Deployment
from .options import evaluate_scenario, swap_price
from .scenario import Scenario


def simulator_version() -> str:
    """The installed package version, else the checkout's pyproject version, plus the git commit when in a checkout."""
    root = Path(__file__).resolve().parents[2]  # roofline/report/render.py -> the checkout
    try:
        version = metadata.version("roofline")
    except metadata.PackageNotFoundError:
        version = "unknown"
        pyproject = root / "pyproject.toml"
        if pyproject.is_file():
            found = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.M)
            version = found.group(1) if found else version
    commit = _git_commit(root / ".git")
    return f"roofline {version}" + (f", commit {commit}" if commit else "")


def _git_commit(git: Path) -> str | None:
    """The checked-out commit, read from .git without running git; None outside a checkout."""
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:12]
        ref = head[5:]
        loose = git / ref
        if loose.is_file():
            return loose.read_text().strip()[:12]
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0][:12]
    except OSError:
        return None
    return None


_LAYOUT_TEXT = {"both": "both attention layouts tried on a MoE model's replicas of tp > 1 (tensor-parallel, and "
                         "data-parallel over the tp GPUs with the MoE tensor-parallel), the better kept",
                "on": "attention data-parallel over the tp GPUs on a MoE model's replicas of tp > 1 (the MoE tensor-parallel)",
                "off": "attention tensor-parallel only"}


def _engine_text(scenario: Scenario) -> str:
    """The serving engine every deployment runs under and the attention layouts searched (`Scenario.engine`,
    `Scenario.attention_dp`), as one assumption line."""
    engine = ("none: the bare roofline (no per-step or per-request host time, no engine limits)" if scenario.engine is None
              else f"{scenario.engine} (`roofline engines`: its host times per step and request, batch and token limits, "
                   "memory share and all-reduce)")
    return f"Serving engine: {engine}; attention layout: {_LAYOUT_TEXT[scenario.attention_dp]}."


def assumptions(scenario: Scenario, table: pd.DataFrame) -> dict:
    """Everything the numbers rest on, as text and small tables (formatted for people)."""
    reserve = Deployment.model_fields["runtime_reserve_bytes"]
    if scenario.serving == "continuous":
        q = f"p{100 * scenario.ttft_percentile:g}"
        general = [
            "Continuous batching in steady state (the capacity planner, `roofline plan`): requests arrive as a Poisson "
            "stream, join the running batch every engine step, and wait for the prefill server in an M/G/1 queue. "
            f"TTFT is the {q} (queueing + the prefill itself); TPOT is the mean decode step, stretched by the prefill "
            "passes mixed in; batch is the mean decode batch by Little's law.",
            "Replica shapes searched: tp inside the NVLink domain times 1-16 pipeline stages, and expert parallelism for "
            "MoE models, up to 64 GPUs; a replica wider than a node crosses the scale-out network (ib-ndr-400).",
            "Each hardware shows its cheapest fleet that meets both SLOs; the binding constraint is what caps the rate one "
            "replica may take ('capacity': memory, the batch cap or the prefill server).",
            (f"Replicas = ceil(requests/s / the largest rate one replica serves within the SLOs); demand here is "
             f"{fmt.count(scenario.output_tokens_per_s_demanded)} output tokens/s. " if scenario.concurrency is None else
             f"The load is a closed loop of {fmt.count(scenario.concurrency)} clients, each sending its next request when its "
             "last one finished (as vllm bench serve --max-concurrency, genai-perf and AIPerf measure); replicas = ceil(clients / "
             "the most one replica keeps within the SLOs, N = X·R by the response-time law), and the rate is what the fleet answers. ")
            + "GPUs = replicas x tp x pp x ep; "
            "$/hour = GPUs x price per GPU-hour.",
            "$/M output tokens is the fleet's $/hour over the output tokens asked of it per hour (idle headroom included); "
            "'at full load' is one replica at its largest stable rate.",
        ]
    else:
        general = [
            "Static batching: each replica runs batches of `batch_size` requests from prefill to the last output token; "
            "a request's TTFT is the prefill of its whole batch and TPOT is the mean decode step. No queueing and no "
            "continuous batching (set `serving: continuous` for those).",
            "Replica shapes searched: every tensor-parallel degree inside one scale-up domain (no pipeline or expert "
            "parallelism); each hardware shows its cheapest fleet that meets both SLOs (the capacity planner in its "
            "static mode, `roofline plan --serving static`).",
            "Batch size is the largest that fits in memory, stays within the batch cap, and meets both SLOs (or the "
            "multiple of a GEMM/dequantization tile just below it, when that serves more tokens/s); "
            "the binding constraint is what stops one more request per batch.",
            f"Replicas = ceil(requests/s x output tokens / output tokens/s of one replica at full load); demand here is "
            f"{fmt.count(scenario.output_tokens_per_s_demanded)} output tokens/s, and tokens/s/replica is each replica's share of it. "
            "GPUs = replicas x tp; $/hour = GPUs x price per GPU-hour.",
            "$/M output tokens is the fleet's $/hour over the output tokens asked of it per hour (the last replica's idle "
            "headroom included); 'at full load' is one replica kept busy (Prediction.usd_per_million_output_tokens).",
        ]
    general += [
        f"Runtime memory reserve per GPU: {fmt.gigabytes(reserve.default)} = {fmt.gibibytes(reserve.default)} ({reserve.description}).",
        "kWh/M output tokens is the GPUs' board energy (not the server's or the cooling's): each operator draws "
        "P = P_idle + (TDP - P_idle) x u, u the utilization of the resource it is bound by; idle replicas and idle "
        "moments draw P_idle (roofline/energy.py; idle and TDP figures per device in hardware_profiles/).",
        "Peaks are datasheet figures (dense); realistic times multiply them by the efficiency fractions below. "
        "'default' fractions come from public measurements, not yet calibrated on a real GPU; 'calibrated' ones were measured.",
        f"Price basis: {PRICE_BASIS}. Reserved and marketplace rates differ; the price of each device is dated below."
        + _off_basis_text(scenario, table)
        + (f" Overridden by the scenario: {', '.join(f'{h} {fmt.usd(v)}' for h, v in scenario.prices.items())}." if scenario.prices else ""),
        f"Precision: weights {scenario.weight_dtype or 'native'}, compute {scenario.activation_dtype or 'native'}, "
        f"KV cache {scenario.kv_dtype or 'native'}; flash attention.",
        _engine_text(scenario),
        "TTFT and TPOT carry an 80% band in brackets: the range in which 80% of published measurements of that kind "
        "(serving or static batch, by hardware and precision class where enough runs exist) fell relative to their "
        "predictions; the predictions are optimistic on the whole, so the band mostly lies above the figure "
        "(calibrate/published/report/accuracy.md).",
        f"Simulator: {simulator_version()}.",
    ]
    hw_rows = []
    for hid in dict.fromkeys(table["hardware_id"]):
        hw = scenario.hardware_profile(hid)
        e = hw.efficiency
        flops = ", ".join(f"{k} {fmt.fraction(v)}" for k, v in e.flops_fraction.items() if k in ("bf16", "fp16", "fp8", "int8", "fp4"))
        hw_rows.append([hid, hw.name, f"{fmt.usd(hw.price_usd_per_gpu_hour)}/GPU-hour", hw.price_date,
                        hw.price_note.removeprefix("price: ") or "on the basis",
                        fmt.fraction(e.memory_bandwidth_fraction), flops, fmt.fraction(e.attention_flops_fraction),
                        fmt.fraction(e.interconnect_bandwidth_fraction), fmt.seconds(e.kernel_overhead_s), e.source_kind,
                        hw.sources.get("price_usd_per_gpu_hour", "")])
    hw_header = ["id", "hardware", "price", "price date", "price basis", "HBM BW fraction", "GEMM FLOP/s fractions",
                 "attention fraction", "all-reduce fraction", "kernel overhead", "fractions", "price source"]
    return {"general": general, "hw_header": hw_header, "hw_rows": hw_rows, "scenario_yaml": scenario.to_yaml()}


def _off_basis_text(scenario: Scenario, table: pd.DataFrame) -> str:
    """' Off the basis: gb200 (price: ESTIMATE), ...' for the devices of the table whose price is not on PRICE_BASIS."""
    off = [f"{hid} ({note})" for hid in dict.fromkeys(table["hardware_id"])
           if (note := scenario.hardware_profile(hid).price_note)]
    return f" Off the basis: {', '.join(off)}; see their price sources below." if off else ""


# ------------------------------------------------------------ formatting
def _money(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.usd(x)


def _kwh(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3g}"


def _int(x) -> str:
    import pandas as pd

    return "n/a" if x is None or pd.isna(x) else fmt.count(x)


def _display_rows(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    import pandas as pd

    header = ["rank", "model", "hardware", "replica (tp/pp/ep)", "batch", "tokens/s/replica", "replicas", "GPUs",
              "$/hour", "$/M output tokens", "$/M at full load", "kWh/M output tokens", "TTFT (80% band)", "TPOT (80% band)",
              "binding constraint"]
    rows = []
    for r in table.itertuples(index=False):
        rows.append([
            "-" if pd.isna(r.rank) else str(int(r.rank)), r.model, _hardware_text(r), fmt.replica_of(r),
            _batch_text(r.batch_size) if r.feasible else "-", _int(r.output_tokens_per_s_per_replica), _int(r.replicas), _int(r.gpus),
            _money(r.usd_per_hour), _money(r.usd_per_million_output_tokens), _money(r.usd_per_million_output_tokens_full_load),
            _kwh(r.kwh_per_million_output_tokens),
            _with_band(r.ttft_s, r.ttft_band_low_s, r.ttft_band_high_s), _with_band(r.tpot_s, r.tpot_band_low_s, r.tpot_band_high_s),
            r.binding_constraint,
        ])
    return header, rows


def _with_band(value_s: float, low_s: float, high_s: float) -> str:
    """'16.3 ms (18.8 ms – 1.31 s)': the figure and its 80% band from published runs, where it has one."""
    text = fmt.seconds(value_s)
    band = fmt.span(low_s, high_s)
    return text + (f" ({band})" if band else "")


def _hardware_text(r) -> str:
    """The hardware id, with what its price is when it is not on the stated basis ('gb200 (price: ESTIMATE)')."""
    note = getattr(r, "price_note", "")
    return f"{r.hardware_id} ({note})" if isinstance(note, str) and note else r.hardware_id


def _batch_text(b) -> str:
    """A static batch is a whole number; a continuous-batching mean batch keeps one decimal."""
    return _int(b) if float(b).is_integer() else f"{b:.1f}"


def _slo_text(s: Scenario) -> str:
    ttft = fmt.seconds(s.ttft_slo_s) if s.ttft_slo_s else "none"
    if s.ttft_slo_s and s.serving == "continuous":
        ttft = f"p{100 * s.ttft_percentile:g} {ttft}"
    tpot = fmt.seconds(s.tpot_slo_s) if s.tpot_slo_s else "none"
    cap = fmt.count(s.max_batch_size) if s.max_batch_size else "none"
    model = ("continuous batching with queueing (the capacity planner)" if s.serving == "continuous"
             else "static batches")
    chunk = f"; chunked prefill {fmt.count(s.chunk_tokens)} tokens/step" if s.chunk_tokens else ""
    return f"TTFT SLO {ttft}, TPOT SLO {tpot}, batch cap {cap}{chunk}; serving model: {model}"


def _traffic_text(s: Scenario) -> str:
    load = f"{s.concurrency:g} concurrent clients (closed loop)" if s.concurrency is not None else f"{s.requests_per_s:g} requests/s"
    return f"{load}, each {s.lengths_text()}"


def top_option_text(table: pd.DataFrame) -> str:
    """One line naming the best-ranked option, or saying that none is feasible."""
    best = table[table["rank"] == 1]
    if best.empty:
        return "no option meets the scenario: " + "; ".join(
            f"{r.hardware_id}: {r.binding_constraint}" for r in table.itertuples(index=False))
    r = best.iloc[0]
    return (f"{r['model']} on {_hardware_text(best.iloc[0])}: {fmt.quantity(r['gpus'], 'GPU')} ({fmt.quantity(r['replicas'], 'replica')} x {fmt.replica_of(best.iloc[0])}, "
            f"batch {_batch_text(r['batch_size'])}), {_money(r['usd_per_hour'])}/hour, {_money(r['usd_per_million_output_tokens'])} "
            f"per million output tokens; bound by {r['binding_constraint']}")


def swap_text(table: pd.DataFrame) -> str:
    """One sentence: the prices at which the top two options swap rank (`options.swap_price`), or ''."""
    sp = swap_price(table)
    if sp is None:
        return ""
    return (f"The top two options swap rank if {sp.top_hardware_id} costs more than {fmt.usd(sp.top_swap_price_usd_per_gpu_hour)} "
            f"per GPU-hour (now {fmt.usd(sp.top_price_usd_per_gpu_hour)}) or {sp.runner_hardware_id} less than "
            f"{fmt.usd(sp.runner_swap_price_usd_per_gpu_hour)} (now {fmt.usd(sp.runner_price_usd_per_gpu_hour)}): $/M output tokens "
            "is linear in the price, so the swap price is the price times the ratio of the two options' $/M.")


def render_markdown(scenario: Scenario, table: pd.DataFrame) -> str:
    a = assumptions(scenario, table)
    header, rows = _display_rows(table)

    def md(h, rs):
        cells = lambda r: "| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |"  # noqa: E731
        return "\n".join([cells(h), "| " + " | ".join("---" for _ in h) + " |", *(cells(r) for r in rs)])

    notes = [f"- **{r.model} on {r.hardware_id}**: {r.binding_constraint}; {r.note}" for r in table.itertuples(index=False)]
    parts = [
        f"# {scenario.title}", "",
        f"Traffic: {_traffic_text(scenario)}. {_slo_text(scenario)}.", "",
        f"**Top option**: {top_option_text(table)}.", "",
        *([swap_text(table), ""] if swap_text(table) else []),
        "## Options", "", md(header, rows), "",
        "Unranked rows (`-`) do not fit, miss an SLO even at batch 1 or lack the number format; they are never ranked.", "",
        "## Binding constraints", "", *notes, "",
        "## Assumptions", "", *(f"- {g}" for g in a["general"]), "",
        "### Hardware: efficiency fractions and prices", "", md(a["hw_header"], a["hw_rows"]), "",
        "### Scenario", "", "```yaml", a["scenario_yaml"].rstrip(), "```", "",
    ]
    return "\n".join(parts)


def _bar_chart_svg(title: str, labels: list[str], values: list[float], texts: list[str], color: str) -> str:
    """A horizontal bar chart as inline SVG; NaN values get no bar and their text (e.g. 'n/a')."""
    row_h, label_w, bar_w, text_w, top = 22, 260, 360, 150, 28
    width = label_w + bar_w + text_w
    height = top + row_h * len(labels) + 8
    finite = [v for v in values if not math.isnan(v)]
    vmax = max(finite) if finite and max(finite) > 0 else 1.0
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           f'role="img" aria-label="{html.escape(title)}">',
           f'<text x="0" y="16" font-size="14" font-weight="bold">{html.escape(title)}</text>']
    for i, (label, v, t) in enumerate(zip(labels, values, texts)):
        y = top + i * row_h
        out.append(f'<text x="{label_w - 8}" y="{y + 15}" font-size="12" text-anchor="end">{html.escape(label)}</text>')
        w = 0.0 if math.isnan(v) else bar_w * v / vmax
        if w > 0:
            out.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{color}"/>')
        out.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" font-size="12">{html.escape(t)}</text>')
    out.append("</svg>")
    return "\n".join(out)


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em; color: #222; max-width: 1400px; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f0f0f0; } td.l, th.l { text-align: left; }
tr.infeasible td { color: #888; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; }
.charts svg { display: block; margin: 1em 0; }
"""


def render_html(scenario: Scenario, table: pd.DataFrame) -> str:
    a = assumptions(scenario, table)
    header, rows = _display_rows(table)
    e = html.escape
    left = {1, 2, 14}

    def html_table(h, rs, left_cols, classes=None):
        head = "".join(f'<th class="l">{e(c)}</th>' if i in left_cols else f"<th>{e(c)}</th>" for i, c in enumerate(h))
        body = []
        for k, r in enumerate(rs):
            cls = f' class="{classes[k]}"' if classes else ""
            body.append(f"<tr{cls}>" + "".join(f'<td class="l">{e(str(c))}</td>' if i in left_cols else f"<td>{e(str(c))}</td>"
                                               for i, c in enumerate(r)) + "</tr>")
        return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"

    classes = ["feasible" if f else "infeasible" for f in table["feasible"]]
    multi = table["model_id"].nunique() > 1
    labels = [f"{r.model} / {r.hardware_id}" if multi else r.hardware_id for r in table.itertuples(index=False)]
    cost = [float(x) for x in table["usd_per_million_output_tokens"]]
    gpus = [float(x) for x in table["gpus"]]
    charts = [
        _bar_chart_svg("$ per million output tokens (fleet at the demanded load)", labels, cost,
                       [_money(x) if not math.isnan(x) else f"n/a ({b})" for x, b in zip(cost, table["binding_constraint"])], "#3b6ea8"),
        _bar_chart_svg("GPUs needed", labels, gpus, [_int(x) for x in gpus], "#c26a2e"),
    ]
    notes = "".join(f"<li><b>{e(r.model)} on {e(r.hardware_id)}</b>: {e(r.binding_constraint)}; {e(r.note)}</li>"
                    for r in table.itertuples(index=False))
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(scenario.title)}</title>", f"<style>{_CSS}</style></head><body>",
        f"<h1>{e(scenario.title)}</h1>",
        f"<p>Traffic: {e(_traffic_text(scenario))}. {e(_slo_text(scenario))}.</p>",
        f"<p><b>Top option</b>: {e(top_option_text(table))}.</p>",
        *([f"<p>{e(swap_text(table))}</p>"] if swap_text(table) else []),
        "<h2>Options</h2>", html_table(header, rows, left, classes),
        "<p>Unranked rows (-) do not fit, miss an SLO even at batch 1 or lack the number format; they are never ranked.</p>",
        '<div class="charts">', *charts, "</div>",
        "<h2>Binding constraints</h2>", f"<ul>{notes}</ul>",
        "<h2>Assumptions</h2>", "<ul>" + "".join(f"<li>{e(g)}</li>" for g in a["general"]) + "</ul>",
        "<h3>Hardware: efficiency fractions and prices</h3>", html_table(a["hw_header"], a["hw_rows"], {0, 1, 4, 6, 11}),
        "<h3>Scenario</h3>", f"<pre>{e(a['scenario_yaml'])}</pre>",
        f"<p><small>Generated {e(_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'))} by {e(simulator_version())}.</small></p>",
        "</body></html>", "",
    ])


def render_csv(table: pd.DataFrame) -> str:
    return table.to_csv(index=False, float_format="%.10g")


# ------------------------------------------------------------ writing
@dataclass(frozen=True)
class WrittenReport:
    html: Path
    markdown: Path
    csv: Path
    table: pd.DataFrame


def write_report(scenario: Scenario, out_dir: str | Path, progress: bool = True, stream: IO[str] | None = None) -> WrittenReport:
    """Evaluate the scenario and write report.html, report.md and report.csv into `out_dir` (created if needed)."""
    out = Path(out_dir)
    for m in scenario.models:  # unknown ids fail before anything is created
        load_model(m)
    for h in scenario.hardware:
        scenario.hardware_profile(h)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SpecError("out", f"cannot create {str(out)!r}: {exc.strerror or exc}") from None
    table = evaluate_scenario(scenario, progress=progress, stream=stream)
    paths = WrittenReport(out / "report.html", out / "report.md", out / "report.csv", table)
    write_atomic(paths.html, render_html(scenario, table))
    write_atomic(paths.markdown, render_markdown(scenario, table))
    write_atomic(paths.csv, render_csv(table))
    return paths
