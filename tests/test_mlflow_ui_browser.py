"""The MLflow UI on a finished sweep, as a user sees it: a real ``mlflow server`` and real headless Chromium.

The sweep's store (the session's ``digits_sweep``) is served on a free loopback port; Chromium, driven over its
DevTools protocol (the websocket client is aiohttp, which MLflow itself depends on: no browser driver package),
opens the experiment's page and the parent run's artifacts, and the tests read what rendered.

Which page opens matters: MLflow 3.17 opens an experiment on the GenAI "Overview" (traces, tokens, an assistant)
unless it knows the experiment is model training. Its UI takes that from its global workflow type — the URL's
``workflowType=machine_learning``, or the choice a user once made in that browser (local storage) — and a fresh
browser has none, so the experiment's ``mlflow.experimentKind`` tag alone does not pick the runs table for the
landing page. :data:`EXPERIMENT_ROUTE` is therefore the route users are given; ``#/experiments/<id>`` without it
opens the Overview in a fresh browser whatever the tag says.

Selectors are MLflow's own, read off the rendered DOM of MLflow 3.17: runs-table rows are ag-grid rows
``[role=row][row-id=<run id>]``, the run name is the link in the ``attributes.`Run Name``` cell (whose button
unfolds a parent's children), and the artifacts tree has ``[data-testid=artifact-tree-node][artifact-name]``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from support.devtools import DevTools
from support.net import free_port
from support.processes import MLFLOW
from support.sweeps import FinishedSweep

from none_sweep.tracking import layout

CHROMIUM = Path("/usr/bin/chromium")
#: What runs headless Chromium on a machine with no network beyond loopback (see scripts/screenshot_mlflow.sh).
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,900")  # fmt: skip
#: The experiment's page as the sweep prints it (see the module docstring and ``tracking.layout.ui_route``).
RUN_ARTIFACTS_ROUTE = "#/experiments/{id}/runs/{run}/artifacts?workflowType=machine_learning"
NO_JOBS = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent: apt-get install -y chromium (scripts/test.sh does)"
)

NAME_CELL = '[col-id="attributes.`Run Name`"]'
ROWS_JS = f"""(() => {{ const out = {{}};
  for (const row of document.querySelectorAll('[role=row][row-id]')) {{
    const a = row.querySelector({json.dumps(NAME_CELL + " a")});
    if (a) out[row.getAttribute('row-id')] = a.innerText.trim(); }}
  return out; }})()"""
ARTIFACTS_JS = """Array.from(document.querySelectorAll('[data-testid=artifact-tree-node]'))
  .map(e => e.getAttribute('artifact-name'))"""


# ---------------------------------------------------------------------- the processes
def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 240) -> bytes:
    """``url``'s body once it answers; fails with ``log`` when the process exits first or never answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.read()
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(f"{log.stem} exited {proc.returncode}:\n{log.read_text()[-4000:]}") from None
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not answer in {timeout:.0f}s:\n{log.read_text()[-4000:]}") from None
            time.sleep(0.5)


@dataclass
class Started:
    proc: subprocess.Popen
    log: Path


def start(argv: list[str], folder: Path, tag: str, env: dict[str, str] | None = None) -> Started:
    """``argv`` in its own session (so its whole group is stopped by id), output in ``folder/tag.log``."""
    log = folder / f"{tag}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=folder, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env={**os.environ, **(env or {})})  # fmt: skip
    return Started(proc, log)


def stop(started: Started) -> None:
    stop_group(started.proc)


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM ``proc``'s process group, reap ``proc``, then SIGKILL whatever of the group is left.

    Reaping first matters: until it is waited for, the leader is a zombie that still counts as a member of its
    group, and a wait for the group to vanish would sit out its whole grace period.
    """
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=15)


@pytest.fixture(scope="module")
def mlflow_ui(digits_sweep: FinishedSweep, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server`` on the sweep's store, on a free loopback port; its base URL.

    Without its job runner: on a database store MLflow 3.17 otherwise starts seven huey consumer processes beside
    the UI, which a 2-core machine feels and these tests never use.
    """
    assert digits_sweep.code == 0, digits_sweep.text
    folder = tmp_path_factory.mktemp("mlflow-ui")
    port = free_port()
    server = start([MLFLOW, "server", "--backend-store-uri", digits_sweep.uri, "--host", "127.0.0.1",
                    "--port", str(port), "--workers", "1"], folder, "mlflow", NO_JOBS)  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health", server.proc, server.log)
        yield base
    finally:
        stop(server)


@pytest.fixture(scope="module")
def devtools() -> Iterator[str]:
    """Headless Chromium with a new empty profile and its DevTools on loopback; the websocket URL of its page."""
    with tempfile.TemporaryDirectory(prefix="none-sweep-chromium-") as tmp:
        folder = Path(tmp)
        port = free_port()
        browser = start([str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={folder / 'profile'}",
                         "--remote-debugging-address=127.0.0.1", f"--remote-debugging-port={port}", "about:blank"],
                        folder, "chromium")  # fmt: skip
        try:
            targets = json.loads(wait_http(f"http://127.0.0.1:{port}/json/list", browser.proc, browser.log, 60))
            yield next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        finally:
            stop(browser)


# ---------------------------------------------------------------------- the page
@asynccontextmanager
async def connected(ws_url: str) -> AsyncIterator[DevTools]:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=0) as ws:
        page = DevTools(ws)
        await page.call("Page.enable")
        yield page


# ---------------------------------------------------------------------- what the store says
@dataclass(frozen=True)
class Expected:
    experiment_id: str
    parent_id: str
    parent_name: str
    children: dict[str, str]  # run id → run name
    trial_ids: dict[str, str]  # run id → Ray trial id
    points: dict[str, str]  # run id → point name (children evaluating a search.points_to_evaluate entry)


@pytest.fixture(scope="module")
def expected(digits_sweep: FinishedSweep) -> Expected:
    client = MlflowClient(tracking_uri=digits_sweep.uri)
    experiment = client.get_experiment_by_name(digits_sweep.name)
    assert experiment is not None
    parents = client.search_runs([experiment.experiment_id], layout.parent_filter(digits_sweep.name))
    assert len(parents) == 1
    parent = parents[0]
    children = client.search_runs([experiment.experiment_id], layout.child_filter(parent.info.run_id))
    return Expected(
        experiment.experiment_id,
        parent.info.run_id,
        parent.info.run_name,
        {r.info.run_id: r.info.run_name for r in children},
        {r.info.run_id: r.data.tags[layout.TRIAL_ID_TAG] for r in children},
        {r.info.run_id: r.data.tags[layout.POINT_TAG] for r in children if layout.POINT_TAG in r.data.tags},
    )


async def runs_table(ws_url: str, url: str, parent_id: str, child_ids: set[str]) -> dict[str, Any]:
    """Open ``url``; wait for the runs table; unfold ``parent_id``; what the page and its rows show."""
    async with connected(ws_url) as page:
        await page.open(url)
        await page.until(f"{ROWS_JS}[{json.dumps(parent_id)}]", "the parent run's row in the runs table")
        seen = {"title": await page.js("document.title"), "hash": await page.js("location.hash")}
        seen["folded"] = await page.js(ROWS_JS)
        unfold = f"{NAME_CELL} button"
        selector = json.dumps(f'[role=row][row-id="{parent_id}"] {unfold}')
        assert await page.js(f"(() => {{ const b = document.querySelector({selector}); if (b) b.click(); return !!b; }})()"), \
            "the parent run's row has no button to unfold its children"  # fmt: skip
        wanted = json.dumps(sorted(child_ids))
        await page.until(f"(() => {{ const rows = {ROWS_JS}; return {wanted}.every(id => id in rows); }})()",
                         "the parent's children after unfolding it")  # fmt: skip
        seen["rows"] = await page.js(ROWS_JS)
        return seen


async def artifact_names(ws_url: str, url: str) -> list[str]:
    async with connected(ws_url) as page:
        await page.open(url)
        return await page.until(f"(() => {{ const n = {ARTIFACTS_JS}; return n.length ? n : null; }})()",
                                "the run's artifacts tree")  # fmt: skip


# ---------------------------------------------------------------------- the tests
def test_the_experiment_opens_on_its_runs_table_with_the_parent_and_its_children(
    mlflow_ui: str, devtools: str, expected: Expected, digits_sweep: FinishedSweep
) -> None:
    url = f"{mlflow_ui}/{layout.ui_route(expected.experiment_id)}"
    seen = asyncio.run(runs_table(devtools, url, expected.parent_id, set(expected.children)))
    # the runs table, not the GenAI overview
    assert seen["title"].startswith("Runs"), seen["title"]
    assert re.match(rf"#/experiments/{expected.experiment_id}/runs\b", seen["hash"]), seen["hash"]
    assert "overview" not in seen["hash"].lower()
    # the parent stands for the sweep, named after it
    assert seen["folded"][expected.parent_id] == expected.parent_name == digits_sweep.name
    # unfolded: every trial of the sweep, each named as MLflow has it, after its trial (and its point)
    rows = seen["rows"]
    assert set(rows) == {expected.parent_id, *expected.children}
    assert {run: rows[run] for run in expected.children} == expected.children
    assert sorted(expected.trial_ids.values()) == sorted(t.trial_id for t in digits_sweep.trials)
    for run, name in expected.children.items():
        assert expected.trial_ids[run] in name, (name, expected.trial_ids[run])
    assert sorted(expected.points.values()) == ["paper_defaults"]  # the digits space's one point
    for run, point in expected.points.items():
        assert point in rows[run], (rows[run], point)


def test_the_parent_runs_artifacts_list_the_sweep_files_and_the_pareto_plot(
    mlflow_ui: str, devtools: str, expected: Expected
) -> None:
    route = RUN_ARTIFACTS_ROUTE.format(id=expected.experiment_id, run=expected.parent_id)
    names = asyncio.run(artifact_names(devtools, f"{mlflow_ui}/{route}"))
    assert {layout.SPACE_ARTIFACT, layout.RECORD_ARTIFACT} <= set(names), names
    assert {layout.PLOT_ARTIFACT, layout.CHOSEN_ARTIFACT, layout.REPORT_FOLDER} <= set(names), names
