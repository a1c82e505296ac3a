"""The code location loads, validates, and stays light."""

import subprocess
import sys

from tests.conftest import REPO_ROOT


def run(cmd: list[str], env: dict[str, str], timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_loading_the_code_location_imports_neither_torch_nor_xgboost(cli_env):
    probe = "import sys, ats_assets.definitions; print(sorted(m for m in ('torch', 'xgboost') if m in sys.modules))"
    result = run([sys.executable, "-c", probe], cli_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_dagster_validates_the_workspace(cli_env):
    result = run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cli_env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "All code locations passed validation" in result.stderr + result.stdout


def test_the_code_location_assembles_resources_and_executor():
    from ats_assets.definitions import defs

    job = defs.resolve_implicit_global_asset_job_def()
    assert job.executor_def.name == "in_process"
    assert {"market_data", "options_flow_source", "warehouse_io_manager"} <= set(job.resource_defs)
