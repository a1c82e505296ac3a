"""Dagster's Celery executor runs an ATS pipeline on the local Redis across two worker processes.

A real distributed run, no mocks: two ``celery -A dagster_celery.app worker`` processes (solo
pool, so each is exactly one process running one step at a time) listen on the ``dagster``
queue of Redis database ``BROKER_DB``; the run is launched from this process with
``dagster.execute_job`` on a persistent instance (SQLite in a temporary ``DAGSTER_HOME``, shared
by the three processes) and ``celery_executor`` pointed at the same broker. The pipeline is
``tests.celery_job``: four fetch-and-validate steps and two analysis steps side by side, so both
workers get work. Its results must equal an in-process run of the same job.
"""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import redis
from celery import Celery
from polars.testing import assert_frame_equal

from tests.celery_job import ANALYSES, feature_analysis_job
from tests.conftest import REPO_ROOT
from tests.services import require_redis

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(90),
    # dagster_celery builds its task object again for every step it submits (harmless)
    pytest.mark.filterwarnings("ignore:Task name 'execute_plan' is already registered"),
]

# A Redis database no other test or service of ATS uses; flushed before and after.
BROKER_DB = 11
WORKERS = 2
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


@pytest.fixture
def broker_url() -> Iterator[str]:
    """URL of an empty Redis database for the broker and the result backend."""
    settings = require_redis()
    client = redis.Redis(**settings, db=BROKER_DB, socket_timeout=5)
    client.flushdb()
    try:
        yield f"redis://{settings['host']}:{settings['port']}/{BROKER_DB}"
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def dagster_home(tmp_path: Path) -> Path:
    """A persistent instance (the repo's dagster.yaml: SQLite storage) that workers can open."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO_ROOT / "dagster.yaml").read_text())
    return home


def _worker_config(folder: Path, broker_url: str) -> Path:
    """``dagster_celery_config.py``: what ``dagster_celery.app`` reads to find the broker.

    ``task_acks_late`` with a prefetch of one keeps a busy worker from reserving a second step
    while the other worker is idle.
    """
    folder.mkdir()
    (folder / "dagster_celery_config.py").write_text(
        f"broker_url = {broker_url!r}\n"
        f"result_backend = {broker_url!r}\n"
        "worker_prefetch_multiplier = 1\n"
        "task_acks_late = True\n"
    )
    return folder


def _start_workers(
    stack: ExitStack, tmp_path: Path, broker_url: str, home: Path
) -> list[subprocess.Popen]:
    config_dir = _worker_config(tmp_path / "celery_config", broker_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATS_")}
    env.update(
        DAGSTER_HOME=str(home),
        PYTHONPATH=os.pathsep.join([str(config_dir), str(REPO_ROOT)]),
        PYTHONWARNINGS="ignore",
    )
    workers = []
    for index in range(1, WORKERS + 1):
        log = stack.enter_context((tmp_path / f"worker-{index}.log").open("wb"))
        command = [
            sys.executable, "-m", "celery", "-A", "dagster_celery.app", "worker",
            "--pool", "solo", "--concurrency", "1", "--prefetch-multiplier", "1",
            "--queues", "dagster", "--hostname", f"ats-worker-{index}@%h",
            "--without-gossip", "--without-mingle", "--loglevel", "INFO",
        ]  # fmt: skip
        worker = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        stack.callback(_stop, worker)
        workers.append(worker)
    return workers


def _stop(worker: subprocess.Popen) -> None:
    """Warm shutdown (SIGTERM), then SIGKILL if the worker has not exited in time."""
    if worker.poll() is not None:
        return
    worker.terminate()
    try:
        worker.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(timeout=STOP_TIMEOUT_S)


def _logs(tmp_path: Path) -> str:
    return "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
        for p in sorted(tmp_path.glob("worker-*.log"))
    )


def _wait_until_ready(workers: list[subprocess.Popen], broker_url: str, tmp_path: Path) -> None:
    """Ping the workers through the broker until all answer (bounded by READY_TIMEOUT_S)."""
    app = Celery(broker=broker_url)
    deadline = time.monotonic() + READY_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            dead = [w.pid for w in workers if w.poll() is not None]
            assert not dead, f"worker(s) {dead} exited before the run\n{_logs(tmp_path)}"
            if len(app.control.ping(timeout=1.0)) >= len(workers):
                return
        pytest.fail(f"workers not ready after {READY_TIMEOUT_S:.0f} s\n{_logs(tmp_path)}")
    finally:
        app.close()


def _step_pids(result: dg.JobExecutionResult) -> dict[str, int]:
    return {
        event.step_key: event.step_output_data.metadata["pid"].value
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.STEP_OUTPUT
    }


def _celery_hostnames(result: dg.JobExecutionResult) -> set[str]:
    """Hostnames of the workers that reported executing a step (the executor's engine events)."""
    return {
        event.engine_event_data.metadata["Celery worker"].value
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.ENGINE_EVENT
        and "Celery worker" in event.engine_event_data.metadata
    }


def test_the_celery_executor_spreads_a_pipeline_over_two_workers_with_in_process_results(
    tmp_path: Path, broker_url: str, dagster_home: Path
):
    expected = feature_analysis_job.execute_in_process()
    assert expected.success
    run_config = {"execution": {"config": {"broker": broker_url, "backend": broker_url}}}

    started = time.monotonic()
    with ExitStack() as stack:
        workers = _start_workers(stack, tmp_path, broker_url, dagster_home)
        _wait_until_ready(workers, broker_url, tmp_path)
        instance = stack.enter_context(dg.DagsterInstance.from_config(str(dagster_home)))
        result = stack.enter_context(
            dg.execute_job(
                dg.reconstructable(feature_analysis_job), instance=instance, run_config=run_config
            )
        )
        assert result.success, _logs(tmp_path)
        outputs = {name: result.output_for_node(name) for name in ANALYSES}
        pids = _step_pids(result)
        hostnames = _celery_hostnames(result)
    elapsed = time.monotonic() - started

    steps = {node.name for node in feature_analysis_job.graph.nodes}
    assert set(pids) == steps
    worker_pids = {w.pid for w in workers}
    assert set(pids.values()) <= worker_pids, f"steps ran outside the workers: {pids}"
    assert len(set(pids.values())) == WORKERS, f"one worker ran every step: {pids}"
    assert len(hostnames) == WORKERS and all(h.startswith("ats-worker-") for h in hostnames)
    for name in ANALYSES:
        frame: pl.DataFrame = outputs[name]
        assert len(frame) > 0, name
        assert_frame_equal(frame, expected.output_for_node(name))
    by_worker = {pid: sorted(k for k, v in pids.items() if v == pid) for pid in set(pids.values())}
    print(f"celery run: {len(steps)} steps in {elapsed:.1f} s, by worker pid: {by_worker}")
