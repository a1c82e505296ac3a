"""``ats status``: services, freshness, champion and live session, from real (temporary) stores."""

from datetime import UTC, date, datetime

import polars as pl

from ats_assets.status import last_completed_session, report
from live.session.lock import SessionLock

NOW = datetime(2024, 12, 4, 22, 0, tzinfo=UTC)  # Wednesday, after the close


def test_an_empty_system_says_what_to_run(settings, instance):
    text, healthy = report(settings, instance, NOW)
    assert healthy
    assert "[ok  ] warehouse" in text and "[ok  ] dagster instance" in text
    assert "nothing materialized yet: run `make demo`" in text
    assert "none promoted yet" in text and "no live session running" in text
    assert "[--  ] redis" in text  # REDIS_HOST unset in the default settings


def test_freshness_champion_and_a_running_session(settings, resources, instance):
    warehouse = resources["warehouse"]
    bars = pl.DataFrame(
        {"session": [date(2024, 12, 2)], "ticker": ["AAA"], "ts": [datetime(2024, 12, 2, 15, tzinfo=UTC)],
         "close": [1.0]}
    )  # fmt: skip
    warehouse.replace_window(
        "features", bars, partition_column="session", start=date(2024, 12, 2),
        end=date(2024, 12, 3),
    )  # fmt: skip
    champion = pl.DataFrame(
        {"week": [date(2024, 11, 25)], "asset": ["ensemble_model"], "partition": ["2024-11-25"],
         "model_version": ["abc123"], "sha256": ["f" * 64], "promoted": [True],
         "reason": ["first champion"], "challenger_dollars": [1.0], "champion_dollars": [None]},
        schema_overrides={"champion_dollars": pl.Float64},
    )  # fmt: skip
    warehouse.replace_window(
        "champion_model", champion, partition_column="week", start=date(2024, 11, 25),
        end=date(2024, 11, 26),
    )  # fmt: skip
    with SessionLock(settings.data_dir, "simulated:"):
        text, _ = report(settings, instance, NOW)
    assert "features                     latest 2024-12-02  2 session(s) behind 2024-12-04" in text
    assert "ensemble_model/2024-11-25 @ abc123" in text
    assert "running: session lock held (pid" in text


def test_a_broker_without_keys_and_an_unreachable_redis_are_down(settings, instance):
    from dataclasses import replace

    env = {"ATS_TRADING_MODE": "paper", "REDIS_HOST": "127.0.0.1", "REDIS_PORT": "1"}
    text, healthy = report(replace(settings, env=env), instance, NOW)
    assert not healthy
    assert "[DOWN] broker             Alpaca paper; keys MISSING" in text
    assert "[DOWN] redis              127.0.0.1:1:" in text


def test_the_last_completed_session_waits_for_the_close():
    assert last_completed_session(datetime(2024, 12, 4, 20, 0, tzinfo=UTC)) == date(2024, 12, 3)
    assert last_completed_session(NOW) == date(2024, 12, 4)
    # Thanksgiving, then its early close at 13:00 New York (18:00 UTC)
    assert last_completed_session(datetime(2024, 11, 29, 18, 30, tzinfo=UTC)) == date(2024, 11, 29)
