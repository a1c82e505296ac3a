"""The production Dagster instance (deployment/dagster.yaml) on an empty PostgreSQL database.

From a fresh database: materialize the partitions the regime detector needs into the instance
(runs and event logs land in PostgreSQL), start ``regime_drift_sensor``, run ``dagster-daemon``
for a bounded time, and check in PostgreSQL itself that the sensor ticked and requested the
retraining run. The test's copy of the instance file differs from production in one line: the
run queue launches nothing (``max_concurrent_runs: 0``), so the requested run stays QUEUED
instead of starting to train.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from tests.conftest import REPO_ROOT
from tests.services import require_postgres
from tests.test_regime_sensor import ASSETS, CHANGE, SESSIONS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAEMON_BUDGET_S = 150


@pytest.fixture
def database():
    """An empty database on the local server, dropped afterwards."""
    server = require_postgres()
    name = f"ats_instance_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(**server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield {**server, "dbname": name}
    with psycopg.connect(**server, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    text = (REPO_ROOT / "deployment" / "dagster.yaml").read_text()
    assert "max_concurrent_runs: 10" in text
    (home / "dagster.yaml").write_text(
        text.replace("max_concurrent_runs: 10", "max_concurrent_runs: 0")
    )
    return home


def _env(database: dict, home: Path, data: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "ATS_DATA_DIR": str(data),
        "TIMESCALEDB_HOST": database["host"],
        "TIMESCALEDB_PORT": str(database["port"]),
        "TIMESCALEDB_DATABASE": database["dbname"],
        "TIMESCALEDB_USER": database["user"],
        "TIMESCALEDB_PASSWORD": database["password"],
    }


def test_daemon_on_postgres_ticks_the_drift_sensor_and_queues_retraining(
    database, tmp_path, monkeypatch
):
    from ats_resources.market_data import SimulatedMarketResource
    from ats_resources.settings import Settings, build_resources

    home, data = _home(tmp_path), tmp_path / "data"
    env = _env(database, home, data)
    for key in ("DAGSTER_HOME", "TIMESCALEDB_DATABASE", "TIMESCALEDB_HOST", "TIMESCALEDB_PORT",
                "TIMESCALEDB_USER", "TIMESCALEDB_PASSWORD"):  # fmt: skip
        monkeypatch.setenv(key, env[key])
    settings = replace(Settings.from_env({}), data_dir=data, sim_tickers=40)
    resources = build_resources(settings)
    resources["market_data"] = resources["options_flow_source"] = SimulatedMarketResource(
        n_tickers=40
    )
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        tags = {
            ASSET_PARTITION_RANGE_START_TAG: str(SESSIONS[0]),
            ASSET_PARTITION_RANGE_END_TAG: str(SESSIONS[-1]),
        }
        for selection, run_tags, partition in (
            (["group:market_data", "daily_bars"], tags, None),
            (["market_regime"], {}, str(CHANGE)),
        ):
            result = dg.materialize(
                ASSETS, resources=resources, instance=instance, tags=run_tags,
                selection=selection, partition_key=partition,
            )  # fmt: skip
            assert result.success

    workspace = ["-m", "ats_assets.definitions"]
    started = subprocess.run(
        [sys.executable, "-m", "dagster", "sensor", "start", "regime_drift_sensor", *workspace],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr[-2000:]
    daemon_bin = shutil.which("dagster-daemon", path=str(Path(sys.executable).parent))
    daemon = subprocess.Popen(
        [daemon_bin, "run", *workspace],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    runs: list[tuple] = []
    try:
        deadline = time.monotonic() + DAEMON_BUDGET_S
        with psycopg.connect(**database, autocommit=True) as conn:
            while time.monotonic() < deadline and daemon.poll() is None:
                runs = conn.execute(
                    "SELECT run_id, status, pipeline_name FROM runs "
                    "WHERE pipeline_name = 'retraining_job'"
                ).fetchall()
                if runs:
                    break
                time.sleep(2)
            # The daemon records the run before it closes the tick that requested it: give the
            # tick a moment to turn from STARTED to SUCCESS.
            settle = time.monotonic() + 30
            while True:
                ticks = conn.execute(
                    "SELECT status, type FROM job_ticks WHERE selector_id IS NOT NULL"
                ).fetchall()
                done = ("SUCCESS", "SENSOR") in [(s, t) for s, t in ticks]
                if done or not runs or time.monotonic() > settle or daemon.poll() is not None:
                    break
                time.sleep(1)
            materialized = conn.execute(
                "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
            ).fetchone()[0]
            heartbeats = conn.execute("SELECT daemon_type FROM daemon_heartbeats").fetchall()
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            output = daemon.communicate(timeout=30)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            output = daemon.communicate()[0].decode(errors="replace")
    assert runs, f"no retraining run within {DAEMON_BUDGET_S} s; daemon said:\n{output[-3000:]}"
    [(run_id, status, _)] = runs
    assert status == "QUEUED"  # the test's queue launches nothing
    assert ("SUCCESS", "SENSOR") in [(s, t) for s, t in ticks]
    assert {"SENSOR", "SCHEDULER", "QUEUED_RUN_COORDINATOR"} <= {h[0] for h in heartbeats}
    # 33 sessions x (4 market-data assets + daily_bars) + market_regime, all in PostgreSQL
    assert materialized >= 5 * len(SESSIONS) + 1
    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(run_id)
        assert run.tags["dagster/partition"] == "2024-04-15"
        assert run.tags["dagster/sensor_name"] == "regime_drift_sensor"
        assert run.tags["ats/accelerator"] == "gpu"

    # the UI sees the runs, and still sees them after the webserver restarts: they live in
    # PostgreSQL, not in the process
    first, second = (_ui_runs(env, workspace) for _ in range(2))
    assert run_id in first and first == second


QUERY = "{ runsOrError { ... on Runs { results { runId status jobName } } } }"


def _ui_runs(env: dict[str, str], workspace: list[str]) -> set[str]:
    """Start dagster-webserver, list the runs through its GraphQL API, stop it."""
    import socket

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server_bin = shutil.which("dagster-webserver", path=str(Path(sys.executable).parent))
    server = subprocess.Popen(
        [server_bin, "-h", "127.0.0.1", "-p", str(port), *workspace],
        cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                answer = httpx.post(
                    f"http://127.0.0.1:{port}/graphql", json={"query": QUERY}, timeout=10
                )
                if answer.status_code == 200:
                    results = answer.json()["data"]["runsOrError"]["results"]
                    return {r["runId"] for r in results}
            except httpx.TransportError:
                pass
            time.sleep(1)
        raise AssertionError("dagster-webserver did not answer within 90 s")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
