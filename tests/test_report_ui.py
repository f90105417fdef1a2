"""The MLflow UI screenshot in docs/: a real ``mlflow ui`` on loopback, driven by headless Chromium.

``chromium --screenshot URL`` alone shows MLflow's default runs table: children folded under the sweep run
and no metric columns (MLflow keeps column choices in the browser's local storage, not in the URL). So
Chromium runs with its DevTools protocol on loopback and this script does what a reader would: opens the
experiment's runs table, ticks the ``asr``/``clean_acc``/``clean_acc_drop`` and searched-parameter columns,
unfolds the sweep run, and takes the screenshot.

Regenerate docs/mlflow-ui.png (from the repository root, with chromium installed):

    .venv/bin/python tests/test_report_ui.py --db /path/to/mlflow.db --experiment digits-demo --out docs/mlflow-ui.png

The slow test does the same on the populated fixture store and checks the picture and the table it shows.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.devtools import DevTools
from support.net import free_port

COLUMNS = (
    "asr",
    "clean_acc",
    "clean_acc_drop",
    "defense.max_reset_fraction",
    "defense.lamda_l",
    "defense.lamda_h",
    "defense.finetune_lr",
)
HIDE = ("Dataset", "Source", "Models")
SIZE = (1600, 1000)


def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout:.0f}s") from None
            time.sleep(1)


@contextmanager
def started(argv: list[str], log: Path) -> Iterator[subprocess.Popen]:
    """A process in its own group, ended (the group, by its id) on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


CLICK_BUTTON = """(label) => { const b = Array.from(document.querySelectorAll('button')).find(
  e => (e.innerText || e.getAttribute('aria-label') || '').trim() === label);
  if (!b) return false; b.click(); return true; }"""
CLICK_MENU_ITEM = """(label) => { const menu = document.querySelector('[data-radix-popper-content-wrapper]');
  if (!menu) return false; const el = Array.from(menu.querySelectorAll('*')).find(
  e => e.children.length === 0 && e.textContent.trim() === label); if (!el) return false; el.click(); return true; }"""
HEADERS = "Array.from(document.querySelectorAll('[role=columnheader]')).map(e => e.innerText.trim()).filter(x => x)"
ROWS = "Array.from(document.querySelectorAll('[role=row] a')).map(e => e.innerText.trim()).filter(x => x)"


async def _drive(devtools_port: int, url: str, out: Path) -> dict:
    import aiohttp

    targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{devtools_port}/json/list", timeout=10))
    page = next(t for t in targets if t["type"] == "page")
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws,
    ):
        p = DevTools(ws)
        await p.call("Page.enable")
        await p.call(
            "Emulation.setDeviceMetricsOverride", width=SIZE[0], height=SIZE[1], deviceScaleFactor=1, mobile=False
        )
        await p.call("Page.navigate", url=url)
        await p.until("document.querySelectorAll('[role=gridcell]').length > 0", timeout=120)
        await asyncio.sleep(2)
        await p.js(f"({CLICK_BUTTON})('Close')")  # the MLflow Assistant side panel, when open
        assert await p.js(f"({CLICK_BUTTON})('Columns')"), "no Columns button on the runs page"
        await p.until("document.querySelector('[data-radix-popper-content-wrapper]') !== null")
        for label in (*HIDE, *COLUMNS):
            await p.js(f"({CLICK_MENU_ITEM})({label!r})")
            await asyncio.sleep(0.3)
        await p.js("document.dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape', bubbles: true}))")
        await asyncio.sleep(1)
        await p.js("(() => { const b = document.querySelector('[role=gridcell] button'); if (b) b.click(); })()")
        await p.until(f"{ROWS}.length > 2", timeout=30)
        await asyncio.sleep(2)
        shot = await p.call("Page.captureScreenshot", format="png")
        out.write_bytes(base64.b64decode(shot["data"]))
        return {"headers": await p.js(HEADERS), "rows": await p.js(ROWS)}


def screenshot(db: Path, experiment: str, out: Path, chromium: str = "chromium") -> dict:
    """Serve ``db`` with ``mlflow ui`` on loopback and screenshot ``experiment``'s runs table into ``out``."""
    from mlflow import MlflowClient

    exp = MlflowClient(tracking_uri=f"sqlite:///{db}").get_experiment_by_name(experiment)
    if exp is None:
        raise SystemExit(f"no experiment {experiment!r} in {db}")
    port, devtools = free_port(), free_port()
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    with tempfile.TemporaryDirectory(prefix="none-sweep-ui-") as tmp:
        tmp_path = Path(tmp)
        ui = [mlflow_bin, "ui", "--backend-store-uri", f"sqlite:///{db}", "--host", "127.0.0.1", "--port", str(port)]
        browser = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--window-size={SIZE[0]},{SIZE[1]}",
            "--remote-debugging-address=127.0.0.1",
            f"--remote-debugging-port={devtools}",
            "about:blank",
        ]
        with started(ui, tmp_path / "mlflow.log"):
            wait_http(f"http://127.0.0.1:{port}/health", timeout=240)
            with started(browser, tmp_path / "chromium.log"):
                wait_http(f"http://127.0.0.1:{devtools}/json/version", timeout=60)
                url = f"http://127.0.0.1:{port}/#/experiments/{exp.experiment_id}/runs"
                return asyncio.run(_drive(devtools, url, out))


@pytest.mark.slow
def test_mlflow_ui_screenshot_shows_the_trials(tmp_path):
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    import numpy as np
    from matplotlib.image import imread
    from support.report_store import SWEEP, TRIALS, populate_store

    store = populate_store(tmp_path / "store")
    out = tmp_path / "ui.png"
    seen = screenshot(tmp_path / "store" / "mlflow.db", SWEEP, out)
    assert {"asr", "clean_acc", "clean_acc_drop"} <= set(seen["headers"])
    assert {f"trial_{name}" for name in TRIALS} <= set(seen["rows"]) and SWEEP in seen["rows"]
    pixels = imread(out)
    assert pixels.shape[:2] == (SIZE[1], SIZE[0])
    assert float(pixels[..., :3].std()) > 0.05  # not a blank page
    assert len(np.unique(pixels[..., :3].reshape(-1, 3), axis=0)) > 50
    assert store.uri


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="the MLflow sqlite file")
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--out", type=Path, default=Path("docs/mlflow-ui.png"))
    parser.add_argument("--chromium", default="chromium")
    a = parser.parse_args()
    info = screenshot(a.db.resolve(), a.experiment, a.out, a.chromium)
    print(f"wrote {a.out}: columns {info['headers']}; {len(info['rows'])} runs shown")
