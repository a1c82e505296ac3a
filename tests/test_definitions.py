"""The code location loads, validates, and stays light."""

import subprocess
import sys

from tests.conftest import REPO_ROOT


def run(cmd: list[str], env: dict[str, str], timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_loading_the_code_location_imports_neither_torch_nor_xgboost(cli_env):
    for module in ("ats_assets.definitions", "live.location.definitions"):
        probe = f"import sys, {module}; print(sorted(m for m in ('torch', 'xgboost') if m in sys.modules))"
        result = run([sys.executable, "-c", probe], cli_env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "[]", module


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


def test_the_live_location_has_its_job_schedule_and_failure_sensor():
    from live.location.definitions import defs

    job = defs.resolve_job_def("live_trading_job")
    assert job.tags["ats/live-session"] == "account"
    assert defs.resolve_schedule_def("live_trading_schedule").job_name == "live_trading_job"
    assert defs.resolve_sensor_def("run_failure_alert_sensor")
    keys = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    assert {"live_orders", "live_fills", "live_positions", "live_account",
            "live_trading_performance"} <= keys  # fmt: skip


def test_the_live_schedule_trades_sessions_and_skips_holidays():
    from datetime import datetime
    from zoneinfo import ZoneInfo

    import dagster as dg

    from live.location.jobs import live_trading_schedule

    new_york = ZoneInfo("America/New_York")
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2024, 11, 29, 9, 20, tzinfo=new_york)
    )
    request = live_trading_schedule(context)
    assert request.partition_key == "2024-11-29" and request.run_key == "live-2024-11-29"
    config = request.run_config["ops"]["live_trading_session"]["config"]
    assert config == {"replay": False}
    holiday = dg.build_schedule_context(
        scheduled_execution_time=datetime(2024, 11, 28, 9, 20, tzinfo=new_york)
    )
    result = live_trading_schedule(holiday)
    assert isinstance(result, dg.SkipReason) and "not a trading session" in result.skip_message


def test_ats_executor_switches_the_location_to_one_pod_per_step(cli_env):
    probe = (
        "from ats_assets.definitions import defs; "
        "print(defs.resolve_implicit_global_asset_job_def().executor_def.name)"
    )
    k8s = run([sys.executable, "-c", probe], {**cli_env, "ATS_EXECUTOR": "k8s"})
    assert k8s.returncode == 0, k8s.stderr[-2000:]
    assert k8s.stdout.strip() == "k8s"
    wrong = run([sys.executable, "-c", probe], {**cli_env, "ATS_EXECUTOR": "spark"})
    assert wrong.returncode != 0 and "expected in_process or k8s" in wrong.stderr
