"""The command line as a capacity planner meets it (issue 13): every command takes what predict takes, the
networks listing, one JSON shape per command, one-line errors without a prefix, a quiet broken pipe,
the report scenario's new fields and its title."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import roofline as rl
from roofline import fmt
from roofline.cli import main
from roofline.plan import PRECISIONS

HF = Path(__file__).parent / "hf_configs"


def run_cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


PLAN = ("plan", "--model", "llama-3.1-8b", "--requests-per-s", "10", "--prompt-tokens", "1024", "--output-tokens", "128",
        "--ttft-slo-s", "1", "--tpot-slo-s", "0.04", "--hardware", "h100-sxm,l40s")


# ------------------------------------------------------------ every command takes what predict takes
def test_a_hugging_face_config_is_a_model_wherever_one_is_taken(capsys):
    spec = rl.ModelSpec.from_hf_config(HF / "llama-3.1-8b.json")
    wl = rl.Workload(batch_size=1, prompt_tokens=1024, output_tokens=256)
    code, out, err = run_cli(capsys, "predict", "--model", str(HF / "llama-3.1-8b.json"), "--hardware", "h100-sxm", "--json")
    (doc,) = json.loads(out)
    assert code == 0 and err == "" and doc["tpot_s"] == pytest.approx(rl.predict(spec, rl.load_hardware("h100-sxm"), wl).tpot_s)
    code, out, err = run_cli(capsys, "plan", *PLAN[1:2], str(HF / "llama-3.1-8b.json"), *PLAN[3:], "--json")
    assert code == 0 and json.loads(out)["inputs"]["model"] == spec.name
    code, out, err = run_cli(capsys, "compare", "--model", str(HF / "llama-3.1-8b.json"), "--hardware", "h100-sxm",
                             "--variant", "int4:weight_dtype=int4", "--json")
    assert code == 0 and [r["variant"] for r in json.loads(out)] == ["baseline", "int4"]
    code, _, err = run_cli(capsys, "predict", "--model", "missing.json", "--hardware", "h100-sxm")
    assert code == 2 and err == ("roofline: error: model: no such file 'missing.json'; give a Hugging Face config.json, "
                                 "a spec .yaml or a model id\n")


def test_predict_takes_pp_and_ep(capsys):
    code, out, _ = run_cli(capsys, "predict", "--model", "llama-3.1-70b", "--hardware", "h100-sxm", "--tp", "4", "--pp", "2", "--json")
    (doc,) = json.loads(out)
    ref = rl.predict(rl.load_model("llama-3.1-70b"), rl.load_hardware("h100-sxm"),
                     rl.Workload(batch_size=1, prompt_tokens=1024, output_tokens=256), rl.Deployment(tp=4, pp=2))
    assert code == 0 and doc["gpus_per_replica"] == 8 == 4 * 2 and doc["tpot_s"] == pytest.approx(ref.tpot_s)
    code, out, _ = run_cli(capsys, "predict", "--model", "qwen3-30b-a3b", "--hardware", "h100-sxm", "--ep", "4", "--json")
    (doc,) = json.loads(out)
    assert code == 0 and doc["deployment"]["ep"] == 4 and doc["gpus_per_replica"] == 4
    code, _, err = run_cli(capsys, "predict", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--pp", "0")
    assert code == 2 and err == "roofline: error: pp: must be at least 1, got 0\n"


def test_price_overrides_reprice_predict_and_plan(capsys):
    code, out, _ = run_cli(capsys, "predict", "--model", "llama-3.1-70b", "--hardware", "h100-sxm", "--tp", "2",
                           "--price", "h100-sxm=2.0", "--json")
    (doc,) = json.loads(out)
    assert code == 0 and doc["usd_per_hour"] == pytest.approx(2 * 2.0)  # 2 GPUs x $2.00
    code, out, _ = run_cli(capsys, *PLAN, "--price", "l40s=0.5", "--json")
    rows = {r["hardware_id"]: r for r in json.loads(out)["rows"]}
    assert code == 0 and rows["l40s"]["price_usd_per_gpu_hour"] == 0.5
    if rows["l40s"]["feasible"]:
        assert rows["l40s"]["usd_per_hour"] == pytest.approx(rows["l40s"]["gpus"] * 0.5)
    assert rows["h100-sxm"]["price_usd_per_gpu_hour"] == rl.load_hardware("h100-sxm").price_usd_per_gpu_hour
    code, _, err = run_cli(capsys, *PLAN, "--price", "b200=5")
    assert code == 2 and err == "roofline: error: price: b200 is not among the hardware given (h100-sxm, l40s)\n"
    code, _, err = run_cli(capsys, *PLAN, "--price", "l40s")
    assert code == 2 and err.startswith("roofline: error: price: expected DEVICE=USD_PER_GPU_HOUR")


def test_plan_takes_a_precision_choice(capsys):
    code, out, _ = run_cli(capsys, *PLAN, "--precision", "native", "--json")
    ref = rl.plan("llama-3.1-8b", 10, 1024, 128, 1.0, 0.04, hardware=["h100-sxm", "l40s"], precisions={"native": PRECISIONS["native"]})
    rows = json.loads(out)["rows"]
    assert code == 0 and {r["precision"] for r in rows} == {"native"}
    assert [r["usd_per_hour"] for r in rows] == pytest.approx(list(ref["usd_per_hour"]), nan_ok=True)
    code, _, err = run_cli(capsys, *PLAN, "--precision", "fp4")
    assert code == 2 and err == "roofline: error: precision: unknown precision 'fp4'; choose from native, fp8, int8, int4-g128\n"


def test_calibration_flag_reaches_every_command(capsys, tmp_path):
    code, _, err = run_cli(capsys, "predict", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--calibration", str(tmp_path / "no.yaml"))
    assert code == 2 and err.startswith("roofline: error: calibration") and err.count("\n") == 1
    code, _, err = run_cli(capsys, *PLAN, "--calibration", str(tmp_path / "no.yaml"))
    assert code == 2 and err.startswith("roofline: error: calibration") and err.count("\n") == 1
    code, _, err = run_cli(capsys, "report", "--calibration", str(tmp_path / "no.yaml"), "--out", str(tmp_path / "r"), "--no-progress")
    assert code == 2 and err.startswith("roofline: error: calibration") and err.count("\n") == 1


# ------------------------------------------------------------ networks, JSON shapes, errors, pipes
def test_networks_lists_the_profiles_with_their_figures(capsys):
    code, out, _ = run_cli(capsys, "networks")
    ib = rl.load_network("ib-ndr-400")
    assert code == 0 and "ib-ndr-400 (default)" in out and ib.name in out
    # 50 GB/s per GPU each way = 400 Gb/s line rate; achieved 85% -> 42.5 GB/s
    line = next(x for x in out.splitlines() if x.startswith("ib-ndr-400"))
    assert fmt.rate(50e9, "B/s") in line and "400 Gb/s" in line and "85.0%" in line and "42.5 GB/s" in line
    code, out, _ = run_cli(capsys, "networks", "--json")
    docs = json.loads(out)
    assert [d["id"] for d in docs] == rl.list_networks() and sum(d["default"] for d in docs) == 1


def test_each_command_prints_one_json_shape(capsys):
    for hw in ("h100-sxm", "h100-sxm,l40s"):  # one device or two: a list either way
        code, out, _ = run_cli(capsys, "predict", "--model", "llama-3.1-8b", "--hardware", hw, "--json")
        assert code == 0 and isinstance(json.loads(out), list) and len(json.loads(out)) == hw.count(",") + 1
    code, out, _ = run_cli(capsys, *PLAN, "--json")
    doc = json.loads(out)
    assert code == 0 and set(doc) == {"inputs", "rows"} and isinstance(doc["rows"], list)
    for cmd in (("models", "--json"), ("hardware", "--json"), ("networks", "--json")):
        code, out, _ = run_cli(capsys, *cmd)
        assert code == 0 and isinstance(json.loads(out), list)


def test_flag_errors_name_the_field_without_a_prefix(capsys):
    code, _, err = run_cli(capsys, "predict", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--weight-dtype", "int3")
    assert code == 2 and err.startswith("roofline: error: weight_dtype: unknown dtype 'int3'") and "arguments" not in err
    code, _, err = run_cli(capsys, "predict", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--batch-size", "0")
    assert code == 2 and err == "roofline: error: batch_size: must be at least 1, got 0\n"  # one line, no usage block
    code, _, err = run_cli(capsys, "report", "--requests-per-s", "-1", "--out", "unused", "--no-progress")
    assert code == 2 and err == "roofline: error: requests_per_s: Input should be greater than 0\n"


@pytest.mark.slow
def test_json_into_head_ends_quietly():
    cmd = [sys.executable, "-m", "roofline", *PLAN, "--all-options", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()  # read one line, then go away as `head -1` does
    proc.stdout.close()
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=120)
    assert first.strip() == b"{" and "Traceback" not in err and "BrokenPipeError" not in err and err == ""
    assert code == 141  # 128 + SIGPIPE


# ------------------------------------------------------------ the report scenario
def test_report_from_flags_gets_its_own_title(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "report", "--model", "llama-3.1-8b", "--hardware", "h100-sxm,l40s", "--requests-per-s", "20",
                           "--prompt-tokens", "1024", "--output-tokens", "256", "--out", str(tmp_path), "--no-progress")
    assert code == 0
    title = "llama-3.1-8b at 20 requests/s (1,024 prompt + 256 output tokens)"
    md, page = (tmp_path / "report.md").read_text(), (tmp_path / "report.html").read_text()
    assert md.startswith(f"# {title}\n") and f"<h1>{title}</h1>" in page and f"title: {title}" in md
    assert "Llama-3.1-70B at 10 requests/s" not in md + page  # the default scenario's title is gone
    code, _, _ = run_cli(capsys, "report", "--model", "llama-3.1-8b", "--hardware", "l40s", "--title", "Q3 review",
                         "--out", str(tmp_path / "t"), "--no-progress")
    assert code == 0 and (tmp_path / "t" / "report.md").read_text().startswith("# Q3 review\n")


def test_report_scenario_takes_distributions_chunking_and_prices(capsys, tmp_path):
    from roofline.report import Scenario

    code, out, err = run_cli(capsys, "report", "--model", "llama-3.1-8b", "--hardware", "h100-sxm,l40s", "--requests-per-s", "20",
                             "--prompt-tokens", "lognormal:1024:0.5", "--output-tokens", "uniform:128:384", "--chunk-tokens", "512",
                             "--price", "l40s=0.9", "--ttft-slo-s", "1", "--tpot-slo-s", "0.04", "--out", str(tmp_path), "--no-progress")
    assert code == 0, err
    md = (tmp_path / "report.md").read_text()
    assert "chunked prefill 512 tokens/step" in md and "Overridden by the scenario: l40s $0.90." in md
    embedded = md.split("```yaml\n", 1)[1].split("```", 1)[0]
    s = Scenario.model_validate(__import__("yaml").safe_load(embedded))  # the report's own scenario reproduces it
    assert (s.prompt_tokens, s.output_tokens, s.chunk_tokens, s.prices) == ("lognormal:1024:0.5", "uniform:128:384", 512, {"l40s": 0.9})
    assert s.output_tokens_mean == pytest.approx((128 + 384) / 2)  # uniform on 128..384: mean 256
    # the planner's rows with the same inputs, the L40S at $0.90
    hws = [rl.load_hardware("h100-sxm"), rl.load_hardware("l40s").with_price(0.9)]
    ref = rl.plan("llama-3.1-8b", 20, "lognormal:1024:0.5", "uniform:128:384", 1.0, 0.04, hardware=hws, chunk_tokens=512,
                  precisions={"scenario": rl.Deployment()})
    import pandas as pd

    csv = pd.read_csv(tmp_path / "report.csv").set_index("hardware_id")
    ids = {hw.name: h for h, hw in zip(("h100-sxm", "l40s"), hws)}  # profiles passed as objects come back by name
    assert ref["feasible"].any()
    for r in ref[ref["feasible"]].itertuples():
        assert csv.loc[ids[r.hardware], "usd_per_hour"] == pytest.approx(r.usd_per_hour)
        assert csv.loc[ids[r.hardware], "gpus"] == r.gpus
    for bad, msg in ((("--serving", "static", "--prompt-tokens", "lognormal:1024:0.5"),
                      "prompt_tokens: a length distribution needs serving: continuous (static batches run fixed lengths)"),
                     (("--serving", "static", "--chunk-tokens", "512"), "chunk_tokens: chunked prefill needs serving: continuous"),
                     (("--hardware", "l40s", "--price", "h200=3"), "prices: h200 is not among the scenario's hardware")):
        code, _, err = run_cli(capsys, "report", *bad, "--out", str(tmp_path / "bad"), "--no-progress")
        assert code == 2 and err == f"roofline: error: {msg}\n", err
