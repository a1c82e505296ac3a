"""Shared fixtures: a throw-away warehouse and Dagster home per test, and resource builders."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import dagster as dg
import pytest

from ats_resources.settings import Settings, build_resources

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Default settings with the warehouse in a temporary folder."""
    return replace(Settings.from_env({}), data_dir=tmp_path / "data")


@pytest.fixture
def resources(settings: Settings) -> dict:
    return build_resources(settings)


@pytest.fixture
def instance() -> dg.DagsterInstance:
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for subprocesses: their own DAGSTER_HOME (with the repo's dagster.yaml) and data dir."""
    import os

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO_ROOT / "dagster.yaml").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATS_")}
    env.update(DAGSTER_HOME=str(home), ATS_DATA_DIR=str(tmp_path / "data"), PYTHONWARNINGS="ignore")
    return env
