"""The capacity-planning notebooks in notebooks/ run top to bottom and are committed without outputs.

Each notebook is executed in a fresh "python3" kernel (working directory notebooks/, as Jupyter
would start it), on an in-memory copy: the files on disk are never rewritten.
"""

from __future__ import annotations

import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
CELL_TIMEOUT_S = 120

# notebook -> strings its printed output must contain
EXPECTED = {
    "01_sizing_a_deployment.ipynb": [
        "demand = 5 req/s x 256 tokens = 1,280 output tokens/s",
        "replicas = ceil(5 req/s x 256 tokens / ",
        "GPUs = ",
        "$/M tokens at this load = ",
        "chosen option:",
        "max batch = floor(",
        "sum of decode rows = ",
    ],
    "02_quantization_and_kv_whatifs.ipynb": [
        "bits/weight = 4 + 16/128",
        "= 4.1250",
        "ridge bf16 = ",
        "B* = ",
        "KV int4  per token = ",
        "max batch = floor(",
        "70,272 bytes/token",
    ],
    "04_capacity_planning.ipynb": [
        "$/M output tokens = $",
        "GPUs = ",
        "Little's law: B = ",
        "one node: does not fit: needs",
        "pp x (hop difference) = 2 x",
        "cheapest expert-parallel option",
        "cost as the TPOT SLO tightens",
    ],
    "03_reading_a_calibration_run.ipynb": [
        "base profile h100-sxm, profile match: False",
        "fit: t0 = ",
        "This run was on a CPU",
        "analytical TTFT",
        "calibrated TTFT",
        "calibrated / analytical TPOT = ",
    ],
}


def _python3_kernel_or_skip() -> None:
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    except ImportError:
        pytest.skip("jupyter_client is not installed (it comes with nbclient and ipykernel)")
    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        pytest.skip("no 'python3' Jupyter kernel spec is installed (pip install ipykernel)")


def _text(nb) -> str:
    """Every cell's printed and displayed text. Stream chunks are joined as they came: a loaded kernel may
    flush one print() in two chunks ("one node:" + " does not fit..."), which a newline would split."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(out.text)
            elif out.output_type in ("execute_result", "display_data"):
                parts.append("\n" + out.get("data", {}).get("text/plain", "") + "\n")
    return "".join(parts)


def test_every_notebook_is_covered():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.execution_count is None, f"{name} cell {i}: clear outputs before committing"
            assert cell.outputs == [], f"{name} cell {i}: clear outputs before committing"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_runs(name):
    _python3_kernel_or_skip()
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:
        pytest.fail(f"{name}: a cell raised:\n{exc}")
    errors = [out for cell in nb.cells for out in cell.get("outputs", []) if out.output_type == "error"]
    assert not errors, f"{name}: {errors[0].ename}: {errors[0].evalue}"
    text = _text(nb)
    missing = [s for s in EXPECTED[name] if s not in text]
    assert not missing, f"{name}: output lacks {missing}"
