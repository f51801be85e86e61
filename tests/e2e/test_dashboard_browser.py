"""The dashboard and the procurement report in a real headless Chromium: serve app.py on localhost, load it,
change a widget, screenshot; open the report from disk.

Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them) and selenium; skips with the
reason otherwise. Screenshots go to the test's tmp folder, and also to $ROOFLINE_SCREENSHOTS when set
(that is how the README's pictures are made: ROOFLINE_SCREENSHOTS=tests/e2e pytest tests/e2e).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url():
    """One server for the module's tests: its caches warm up once, as a real session's would."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                    pytest.fail(f"streamlit did not start on {url}:\n{out[-2000:]}")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1500,2200",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-quic"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _save(driver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    driver.save_screenshot(str(path))
    if os.environ.get("ROOFLINE_SCREENSHOTS"):
        shutil.copy(path, Path(os.environ["ROOFLINE_SCREENSHOTS"]) / name)
    return path


def _body(driver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def test_dashboard_loads_and_reacts_to_a_widget(app_url, browser, tmp_path):
    browser.get(app_url)
    wait = WebDriverWait(browser, 90)
    wait.until(lambda d: "TTFT" in _body(d) and "TPOT" in _body(d))
    charts = "div.vega-embed canvas, div.vega-embed svg.marks"
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, charts)) >= 2)  # the two batch-sweep charts have drawn
    first = _save(browser, tmp_path, "dashboard.png")
    assert first.stat().st_size > 10_000  # a real picture, not a blank page
    roofline = browser.find_element(By.XPATH, "//*[contains(text(), 'Roofline')]")
    browser.execute_script("arguments[0].scrollIntoView();", roofline)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, charts)) >= 3)
    time.sleep(1)  # let the scrolled-to chart finish drawing
    _save(browser, tmp_path, "dashboard-roofline.png")
    browser.execute_script("window.scrollTo(0, 0);")

    batch = browser.find_element(By.CSS_SELECTOR, "input[aria-label='Batch size']")
    browser.execute_script("arguments[0].scrollIntoView();", batch)
    before = _body(browser)
    batch.send_keys(Keys.CONTROL, "a")
    batch.send_keys("64", Keys.ENTER)
    wait.until(lambda d: "batch_size=64" in d.current_url or "batch=64" in d.current_url)
    wait.until(lambda d: _body(d) != before and "Running" not in _body(d))
    after = _save(browser, tmp_path, "dashboard-batch-64.png")
    assert after.stat().st_size > 10_000
    assert "Traceback" not in _body(browser)


CHARTS = "div.vega-embed canvas, div.vega-embed svg.marks"


def _open(browser, url: str, ready, timeout: int = 120) -> WebDriverWait:
    browser.get(url)
    wait = WebDriverWait(browser, timeout)
    wait.until(lambda d: ready(_body(d)) and "Running" not in _body(d))
    return wait


def _chart_widths(driver) -> list[int]:
    return [e.size["width"] for e in driver.find_elements(By.CSS_SELECTOR, "div.vega-embed")]


def _settle(driver, wait, n_charts: int) -> None:
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, CHARTS)) >= n_charts)
    time.sleep(1.5)  # let the last chart finish drawing


def test_four_devices_tiles_are_whole_and_memory_charts_full_width(app_url, browser, tmp_path):
    """Issue 13's screenshots: with 4 devices the tiles were cut ("28.5…") and the memory charts 40 px wide."""
    wait = _open(browser, app_url + "/?hw=h100-sxm,h200,a100-sxm-80gb,mi300x&sweep=memory", lambda b: b.count("TPOT") >= 4)
    _settle(browser, wait, 5)  # four memory charts and the roofline
    cut = browser.execute_script("""
        return Array.from(document.querySelectorAll('[data-testid="stMetricValue"]'))
            .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.innerText);""")
    assert cut == []  # every tile's value shows in full
    assert len(browser.find_elements(By.CSS_SELECTOR, '[data-testid="stMetricValue"]')) == 4 * 8
    widths = _chart_widths(browser)
    assert len(widths) == 5 and min(widths) > 300, widths
    sweeps = browser.find_element(By.XPATH, "//h3[contains(., 'Sweeps')]")
    browser.execute_script("arguments[0].scrollIntoView();", sweeps)
    time.sleep(1)
    _save(browser, tmp_path, "dashboard-4-devices.png")
    assert "Traceback" not in _body(browser)


def test_plan_page_shows_the_planners_table(app_url, browser, tmp_path):
    import roofline as rl
    from roofline import fmt
    from roofline.plan import PRECISIONS

    hw = ["h100-sxm", "h200", "a100-sxm-80gb", "mi300x", "l40s"]
    wait = _open(browser, app_url + "/?page=plan&pl_hw=" + ",".join(hw) + "&pl_prec=native,fp8&pl_tight=true",
                 lambda b: "Top option" in b and "What tightening an SLO costs" in b and "x given" in b, timeout=240)
    _settle(browser, wait, 1)
    ref = rl.plan("llama-3.1-70b", 10, 2048, 256, 2.0, 0.05, hardware=hw,
                  precisions={k: PRECISIONS[k] for k in ("native", "fp8")})
    rows = browser.execute_script("""
        const t = document.querySelectorAll('[data-testid="stTable"] table')[0];
        return Array.from(t.querySelectorAll('tbody tr')).map(r => Array.from(r.querySelectorAll('th,td')).map(c => c.innerText.trim()));""")
    assert [r[1] for r in rows] == list(ref["hardware_id"])  # rank, hardware, precision, ...
    for row, r in zip(rows, ref.itertuples()):
        if r.feasible:
            assert row[0] == str(r.rank) and row[5] == str(r.gpus) and fmt.usd(r.usd_per_hour) in row
    assert min(_chart_widths(browser)) > 600  # the frontier, full width
    _save(browser, tmp_path, "dashboard-plan.png")
    assert "Traceback" not in _body(browser)


def test_compare_and_accuracy_pages_render(app_url, browser, tmp_path):
    wait = _open(browser, app_url + "/?page=compare", lambda b: "student 8B" in b and "TPOT vs baseline" in b)
    _settle(browser, wait, 1)
    _save(browser, tmp_path, "dashboard-compare.png")
    assert "Traceback" not in _body(browser)
    # the committed run of `roofline validate --published` (calibrate/published/report/predictions.csv)
    wait = _open(browser, app_url + "/?page=accuracy", lambda b: "Error per family" in b and "Predicted vs measured" in b)
    _settle(browser, wait, 1)
    _save(browser, tmp_path, "dashboard-accuracy.png")
    assert "Traceback" not in _body(browser)


def test_report_renders_in_a_browser(browser, tmp_path):
    """The procurement report for the default scenario, opened from disk: no network, table and charts drawn."""
    from roofline.report import Scenario, write_report

    written = write_report(Scenario.default(), tmp_path / "report", progress=False)
    browser.get(written.html.resolve().as_uri())
    WebDriverWait(browser, 30).until(lambda d: "Top option" in _body(d) or "top option" in _body(d).lower())
    body = _body(browser)
    assert "Continuous batching in steady state" in body and "$/M output tokens" in body
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg")) == 2  # the two inline charts
    shot = _save(browser, tmp_path, "report.png")
    assert shot.stat().st_size > 10_000
