"""The ``ats`` command and Dagster's CLI: one-line errors for mistakes, a 5-partition backfill."""

import subprocess
import sys

import duckdb
import pytest

from tests.conftest import REPO_ROOT

ATS = [sys.executable, "-m", "ats_assets.cli"]


def run(cmd: list[str], env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0]


def test_an_unknown_market_data_source_is_one_line_that_lists_the_choices(cli_env):
    result = run([*ATS, "demo"], {**cli_env, "ATS_MARKET_DATA": "bloomberg"})
    assert_one_line_error(result, "ATS_MARKET_DATA='bloomberg'", "simulated")


def test_a_bad_number_names_the_variable(cli_env):
    result = run([*ATS, "demo"], {**cli_env, "ATS_SIM_TICKERS": "lots"})
    assert_one_line_error(result, "ATS_SIM_TICKERS", "integer")


def test_a_malformed_date_is_one_line_with_the_expected_format(cli_env):
    result = run([*ATS, "demo", "--start", "2024-02-30"], cli_env)
    assert_one_line_error(result, "2024-02-30", "YYYY-MM-DD")


def test_a_holiday_is_one_line_that_suggests_a_session(cli_env):
    result = run([*ATS, "demo", "--start", "2024-07-04", "--end", "2024-07-10"], cli_env)
    assert_one_line_error(result, "2024-07-04 is not a trading session", "2024-07-03")


def test_a_reversed_window_is_one_line(cli_env):
    result = run([*ATS, "demo", "--start", "2024-07-10", "--end", "2024-07-08"], cli_env)
    assert_one_line_error(result, "before --start")


def test_summary_before_any_run_says_nothing_is_materialized(cli_env):
    result = run([*ATS, "summary"], cli_env)
    assert result.returncode == 0, result.stderr
    assert "not materialized" in result.stdout


@pytest.mark.slow
def test_a_five_partition_backfill_from_the_command_line_succeeds(cli_env, tmp_path):
    cmd = [
        sys.executable, "-m", "dagster", "asset", "materialize",
        "-m", "ats_assets.definitions",
        "--select", "group:market_data",
        "--partition-range", "2024-03-04...2024-03-08",
    ]  # fmt: skip
    result = run(cmd, cli_env)
    assert result.returncode == 0, result.stderr[-3000:]
    con = duckdb.connect(str(tmp_path / "data" / "warehouse.duckdb"), read_only=True)
    for table in ("raw_bars", "raw_quotes", "options_flow"):
        sessions, min_tickers = con.execute(
            f"SELECT count(*), min(n) FROM (SELECT session, count(DISTINCT ticker) n FROM {table} GROUP BY 1)"
        ).fetchone()
        assert sessions == 5 and min_tickers >= 150, table
    con.close()


@pytest.mark.slow
def test_demo_over_a_short_window_prints_the_summary_and_is_repeatable(cli_env):
    window = ["--start", "2024-11-27", "--end", "2024-11-29", "--lead-in", "1"]
    first = run([*ATS, "demo", *window], cli_env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (
        "raw_bars" in first.stdout
        and "warehouse.duckdb" in first.stdout
        and "127.0.0.1:3000" in first.stdout
    )
    second = run([*ATS, "demo", *window], cli_env)

    def table(out: str) -> list[str]:
        lines = out.splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("asset "))
        return lines[start : start + 9]

    assert table(second.stdout) == table(first.stdout)


def test_demo_trains_the_week_before_the_last_complete_week_and_backtests_on_the_last():
    from ats_assets.cli import DEMO_END, DEMO_START, model_weeks

    # 2024-11-25 .. 11-29 (Thanksgiving, early close) is the last complete week of the window
    assert model_weeks(DEMO_START, DEMO_END, 1) == [("2024-11-18", True)]
    assert model_weeks(DEMO_START, DEMO_END, 2) == [("2024-11-11", True), ("2024-11-18", True)]


def test_a_window_of_one_complete_week_trains_it_without_a_backtest():
    from datetime import date

    from ats_assets.cli import model_weeks

    assert model_weeks(date(2024, 11, 18), date(2024, 11, 22), 1) == [("2024-11-18", False)]
    assert model_weeks(date(2024, 11, 18), date(2024, 11, 22), 0) == []


def test_live_replay_before_any_demo_says_what_to_run_first(cli_env):
    result = run([*ATS, "live"], cli_env)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: nothing to replay yet: run `make demo` first (features and a champion)"
    )


def test_live_replay_refuses_a_holiday_and_a_negative_speed(cli_env):
    holiday = run([*ATS, "live", "--day", "2024-11-28"], cli_env)
    assert holiday.returncode == 2 and "not a trading session" in holiday.stderr
    fast = run([*ATS, "live", "--speed", "-1"], cli_env)
    assert fast.returncode == 2 and "--speed -1.0: must be >= 0" in fast.stderr


def test_status_on_a_fresh_checkout_names_the_services_and_what_to_run(cli_env):
    result = run([*ATS, "status"], cli_env)
    assert result.returncode == 0, result.stderr
    assert "[ok  ] warehouse" in result.stdout and "[ok  ] dagster instance" in result.stdout
    assert "nothing materialized yet: run `make demo`" in result.stdout
    assert "no live session running" in result.stdout
