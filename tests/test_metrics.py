"""The Prometheus exporter and metric_history: what a scrape shows for a known warehouse and
Dagster instance, what it tolerates, and that the alert rules and dashboard only use its names."""

import json
import re
import socket
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import httpx
import polars as pl
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from ats_resources.metrics import NEW_YORK, ATSCollector, samples, serve
from live.session.records import (
    ACCOUNT_SCHEMA,
    EVENT_SCHEMA,
    FILL_SCHEMA,
    ORDER_SCHEMA,
    POSITION_SCHEMA,
)

MONITORING = Path(__file__).resolve().parents[1] / "deployment" / "monitoring"
EARLIER, LATEST = date(2024, 11, 29), date(2024, 12, 2)
NAME = re.compile(r"\bats_[a-z0-9_]+")


def _ts(day: date, hh: int, mm: int) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=UTC)


def _fill(day, ticker, side, qty, price, fees, at, intent):
    return (day, f"{ticker}-{at[0]}{at[1]}", ticker, side, qty, price, fees, _ts(day, *at),
            intent, "model", price)  # fmt: skip


def _order(day, n, status):
    return (day, f"o{n}", f"b{n}", "AAA", "buy", 10, "market", "entry", _ts(day, 15, n), None,
            None, 100.0, status, "", "model")  # fmt: skip


def _frame(rows, schema) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema, orient="row")


def _write(warehouse, table: str, frame: pl.DataFrame, column: str = "session") -> None:
    first, last = frame[column].min(), frame[column].max()
    warehouse.replace_window(
        table, frame, partition_column=column, start=first, end=last + timedelta(days=1)
    )


def seed_warehouse(warehouse) -> None:
    """Two live sessions, four champion decisions and two regime days.

    Latest session: round trips AAA long +$10 gross - $0.50 fees and BBB short -$5 - $0.10 fees
    (P&L $4.40), 4 submitted / 2 rejected / 1 error orders, a kill-switch event. Earlier session:
    one CCC round trip of +$20, no kill switch."""
    fills = [
        _fill(LATEST, "AAA", "buy", 10, 100.0, 0.0, (14, 35), "entry"),
        _fill(LATEST, "AAA", "sell", 10, 101.0, 0.5, (14, 50), "target"),
        _fill(LATEST, "BBB", "sell", 5, 50.0, 0.1, (15, 0), "entry"),
        _fill(LATEST, "BBB", "buy", 5, 51.0, 0.0, (15, 30), "stop"),
        _fill(EARLIER, "CCC", "buy", 10, 10.0, 0.0, (15, 0), "entry"),
        _fill(EARLIER, "CCC", "sell", 10, 12.0, 0.0, (16, 0), "close"),
    ]
    _write(warehouse, "live_fills", _frame(fills, FILL_SCHEMA))
    statuses = ["submitted"] * 4 + ["rejected"] * 2 + ["unknown"]
    orders = [_order(LATEST, n, s) for n, s in enumerate(statuses)]
    orders += [_order(EARLIER, n, "submitted") for n in range(2)]
    _write(warehouse, "live_orders", _frame(orders, ORDER_SCHEMA))
    account = [
        (LATEST, _ts(LATEST, 14, 35), 100_000.0, 99_000.0, 0.0, 0.0, 0, False),
        (LATEST, _ts(LATEST, 15, 0), 100_050.0, 99_000.0, 3_500.0, 1_000.0, 2, False),
        (LATEST, _ts(LATEST, 15, 45), 99_990.0, 98_000.0, 2_500.0, -1_200.0, 2, True),
        (EARLIER, _ts(EARLIER, 16, 0), 99_000.0, 99_000.0, 0.0, 0.0, 0, False),
    ]
    _write(warehouse, "live_account", _frame(account, ACCOUNT_SCHEMA))
    positions = [
        (LATEST, _ts(LATEST, 15, 45), "DDD", 20, 60.0, 61.0, "local"),
        (LATEST, _ts(LATEST, 15, 45), "EEE", -20, 65.0, 64.0, "local"),
    ]
    _write(warehouse, "live_positions", _frame(positions, POSITION_SCHEMA))
    events = [
        (LATEST, _ts(LATEST, 15, 40), "kill_switch", "daily loss 2.0% of opening equity"),
        (EARLIER, _ts(EARLIER, 14, 30), "reconcile", "adopted 0 positions"),
    ]
    _write(warehouse, "live_events", _frame(events, EVENT_SCHEMA))
    champions = pl.DataFrame(
        {
            "week": [date(2024, 11, 11), date(2024, 11, 18), date(2024, 11, 25), LATEST],
            "asset": [None, "ensemble_model", "ensemble_model", "ensemble_model"],
            "partition": [None, "2024-11-18", "2024-11-25", "2024-12-02"],
            "model_version": [None, "v2", "v3", "v4"],
            "promoted": [False, True, True, True],
            "reason": ["none", "first", "better", "better"],
        }
    )
    warehouse.replace_table("champion_model", champions)
    regimes = pl.DataFrame(
        {
            "session": [EARLIER, LATEST],
            "regime": ["calm_trending", "volatile"],
            "probability": [0.9, 0.8],
            "declared_regime": ["calm_trending", "volatile"],
            "change": [False, True],
            "champion": ["ensemble_model/2024-11-18", "ensemble_model/2024-11-25"],
            "psi_share_drifted": [0.1, 0.4],
            "realized_ic": [0.05, -0.01],
            "validation_ic": [0.06, 0.06],
            "ic_decay": [0.2, 1.2],
        }
    )
    _write(warehouse, "market_regime", regimes)


@dg.asset
def features() -> None:
    """Stands in for the real asset: only its materialization time matters here."""


@dg.op
def broken() -> None:
    raise RuntimeError("boom")


@dg.job
def failing_job() -> None:
    broken()


def seed_instance(instance: dg.DagsterInstance) -> None:
    """One successful run (materializing ``features``), one failed run, and the latest
    session's live_orders materialization naming its broker."""
    assert dg.materialize([features], instance=instance).success
    assert not failing_job.execute_in_process(instance=instance, raise_on_error=False).success
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            "live_orders", partition=str(LATEST), metadata={"broker": "simulated", "mode": "replay"}
        )
    )


@pytest.fixture
def seeded(resources, instance):
    seed_warehouse(resources["warehouse"])
    seed_instance(instance)
    return resources, instance


def by_name(collected) -> dict[str, list[tuple[dict, float]]]:
    out: dict[str, list] = {}
    for name, labels, value in collected:
        out.setdefault(name, []).append((labels, value))
    return out


def value(collected, name: str, **labels) -> float:
    matches = [v for lb, v in by_name(collected).get(name, []) if labels.items() <= lb.items()]
    assert len(matches) == 1, (name, labels, matches)
    return matches[0]


def scrape(url: str) -> list[tuple[str, dict, float]]:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    ]


@pytest.fixture
def scraped(seeded) -> list[tuple[str, dict, float]]:
    resources, instance = seeded
    server, thread, _ = serve(0, collector=ATSCollector(resources, lambda: instance))
    try:
        host, port = server.server_address[:2]
        return scrape(f"http://{host}:{port}/metrics")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.integration  # starts a server on 127.0.0.1, like the vendor tests
def test_a_scrape_shows_the_latest_session_the_champion_and_the_pipeline(scraped) -> None:
    assert value(scraped, "ats_live_pnl_dollars") == pytest.approx(4.4)
    assert value(scraped, "ats_live_fees_dollars") == pytest.approx(0.6)
    assert value(scraped, "ats_live_round_trips") == 2
    assert value(scraped, "ats_live_equity_dollars") == 99_990.0
    assert value(scraped, "ats_live_opening_equity_dollars") == 100_000.0
    assert value(scraped, "ats_live_gross_exposure_dollars") == 2_500.0
    assert value(scraped, "ats_live_net_exposure_dollars") == -1_200.0
    assert value(scraped, "ats_live_open_positions") == 2
    orders = {lb["status"]: v for lb, v in by_name(scraped)["ats_live_orders"]}
    assert orders == {"submitted": 4, "rejected": 2, "unknown": 1, "duplicate": 0}
    assert value(scraped, "ats_live_rejections") == 2
    assert value(scraped, "ats_live_kill_switch_engaged") == 1
    info = by_name(scraped)["ats_live_session_info"]
    assert info == [({"session": "2024-12-02", "broker": "simulated", "mode": "replay"}, 1.0)]
    # the champion in force today is the latest decided (v4, trained the week of 2024-12-02)
    champion = by_name(scraped)["ats_champion_info"]
    assert champion == [
        ({"asset": "ensemble_model", "partition": "2024-12-02", "model_version": "v4"}, 1.0)
    ]
    today = datetime.now(UTC).astimezone(NEW_YORK).date()
    assert value(scraped, "ats_champion_age_days") == (today - date(2024, 12, 9)).days
    assert value(scraped, "ats_model_psi_drifted_share") == 0.4
    assert value(scraped, "ats_model_realized_ic") == -0.01
    assert value(scraped, "ats_model_ic_decay") == 1.2
    assert value(scraped, "ats_market_regime_info", regime="volatile") == 1
    ages = {
        lb["asset"]: v for lb, v in by_name(scraped)["ats_asset_last_materialization_age_seconds"]
    }
    assert set(ages) == {"features", "live_orders"}
    assert all(0 <= age < 120 for age in ages.values())
    runs = {lb["status"]: v for lb, v in by_name(scraped)["ats_runs"]}
    assert runs == {"success": 1, "failure": 1, "started": 0, "queued": 0, "canceled": 0}
    assert value(scraped, "ats_failed_runs_24h") == 1
    assert {lb["section"] for lb, _ in by_name(scraped)["ats_exporter_scrape_errors_total"]} == {
        "trading",
        "models",
        "pipeline",
    }
    assert all(v == 0 for _, v in by_name(scraped)["ats_exporter_scrape_errors_total"])
    assert value(scraped, "ats_exporter_last_scrape_duration_seconds") > 0


@pytest.mark.integration  # starts a server on 127.0.0.1
def test_alert_rules_and_dashboard_use_only_exported_metrics(scraped) -> None:
    exported = {name for name, _, _ in scraped}
    rules = yaml.safe_load((MONITORING / "alert-rules.yml").read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["alert"] and rule["labels"]["severity"] in {"warning", "critical"}
            assert rule["annotations"]["summary"]
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    queries = [t["expr"] for p in panels for t in p["targets"]]
    assert {i["name"] for i in dashboard["__inputs"]} == {"DS_PROMETHEUS"}
    assert all(p["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in panels)
    used = {n for text in expressions + queries for n in NAME.findall(text)}
    assert used and used <= exported, sorted(used - exported)
    for needed in ("ats_live_kill_switch_engaged", "ats_failed_runs_24h", "ats_champion_age_days",
                   "ats_model_psi_drifted_share", "ats_asset_last_materialization_age_seconds",
                   "ats_live_opening_equity_dollars"):  # fmt: skip
        assert any(needed in e for e in expressions), needed
    titles = " ".join(p["title"].lower() for p in panels)
    for word in ("p&l", "equity", "exposure", "positions", "orders", "kill switch", "champion",
                 "drift", "freshness", "failed runs"):  # fmt: skip
        assert word in titles, word
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for c in job["static_configs"]
               for t in c["targets"]}  # fmt: skip
    assert {"ats-exporter:9108", "127.0.0.1:9108"} <= targets
    assert config["rule_files"] == ["alert-rules.yml"]


def test_an_empty_warehouse_without_an_instance_exports_only_the_exporters_series(
    resources,
) -> None:
    collector = ATSCollector(resources)
    names = {name for name, _, _ in samples(collector)}
    assert names == {
        "ats_exporter_scrape_errors_total",
        "ats_exporter_last_scrape_duration_seconds",
    }
    assert collector.errors == {"trading": 0, "models": 0, "pipeline": 0}


class _BrokenChampionTable:
    """The real warehouse, except that reading champion_model fails."""

    def __init__(self, warehouse) -> None:
        self.warehouse = warehouse

    def __getattr__(self, name):
        return getattr(self.warehouse, name)

    def read_table(self, table: str) -> pl.DataFrame:
        if table == "champion_model":
            raise OSError("disk error")
        return self.warehouse.read_table(table)


def test_a_failing_section_counts_an_error_and_the_others_are_still_exported(seeded) -> None:
    resources, instance = seeded
    collector = ATSCollector(_BrokenChampionTable(resources["warehouse"]), lambda: instance)
    collected = samples(collector)
    names = {name for name, _, _ in collected}
    assert "ats_champion_info" not in names and "ats_model_ic_decay" not in names
    assert {"ats_live_pnl_dollars", "ats_runs"} <= names
    assert value(collected, "ats_exporter_scrape_errors_total", section="models") == 1
    assert value(collected, "ats_exporter_scrape_errors_total", section="trading") == 0
    assert collector.last_errors == {"models": "disk error"}


class _CountingWarehouse(_BrokenChampionTable):
    calls = 0

    def tables(self) -> list[str]:
        self.calls += 1
        return self.warehouse.tables()

    def read_table(self, table: str) -> pl.DataFrame:
        return self.warehouse.read_table(table)


def test_reads_are_cached_for_cache_s(resources) -> None:
    seed_warehouse(resources["warehouse"])
    counting = _CountingWarehouse(resources["warehouse"])
    cached = ATSCollector(counting, cache_s=60)
    assert samples(cached) == samples(cached)
    assert counting.calls == 1
    uncached = ATSCollector(counting, cache_s=0)
    samples(uncached), samples(uncached)
    assert counting.calls == 3


def test_metric_history_stores_each_session_as_it_was_then(seeded, resources, instance) -> None:
    from ats_assets.monitoring.assets import metric_history

    warehouse = resources["warehouse"]

    def materialize(day: date) -> dg.ExecuteInProcessResult:
        result = dg.materialize(
            [metric_history], instance=instance, resources=resources, partition_key=str(day)
        )
        assert result.success
        return result

    materialize(EARLIER)
    result = materialize(LATEST)
    history = warehouse.read_table("metric_history")
    assert history.columns == ["session", "ts", "metric", "labels", "value"]
    assert set(history["session"]) == {EARLIER, LATEST}
    assert not history.filter(pl.col("metric").str.starts_with("ats_exporter_")).height

    def stored(day: date, metric: str, **labels) -> float:
        rows = history.filter(
            (pl.col("session") == day)
            & (pl.col("metric") == metric)
            & (pl.col("labels") == json.dumps(labels, sort_keys=True))
        )
        assert rows.height == 1, (day, metric, labels)
        return rows["value"][0]

    assert stored(LATEST, "ats_live_pnl_dollars") == pytest.approx(4.4)
    assert stored(LATEST, "ats_live_kill_switch_engaged") == 1
    assert stored(EARLIER, "ats_live_pnl_dollars") == pytest.approx(20.0)
    assert stored(EARLIER, "ats_live_kill_switch_engaged") == 0
    # the champion and regime in force on each day, not today's
    champion = {"asset": "ensemble_model", "partition": "2024-11-25", "model_version": "v3"}
    assert stored(LATEST, "ats_champion_info", **champion) == 1
    assert stored(LATEST, "ats_champion_age_days") == 0
    assert stored(EARLIER, "ats_champion_age_days") == 4
    assert stored(EARLIER, "ats_model_psi_drifted_share") == 0.1
    # runs and materializations made today did not exist at the end of 2024-12-02
    assert stored(LATEST, "ats_runs", status="success") == 0
    assert not history.filter(
        pl.col("metric") == "ats_asset_last_materialization_age_seconds"
    ).height
    ts = history.filter(pl.col("session") == LATEST)["ts"].unique().to_list()
    assert ts == [datetime(2024, 12, 3, 4, 59, 59, tzinfo=UTC)]  # 23:59:59 in New York
    meta = result.asset_materializations_for_node("metric_history")[0].metadata
    assert meta["history"].value.startswith("![plot](data:image/png;base64,")
    assert meta["dagster/row_count"].value == history.filter(pl.col("session") == LATEST).height
    rows = history.height
    materialize(LATEST)
    assert warehouse.read_table("metric_history").height == rows


def test_ats_metrics_reports_a_port_in_use_in_one_line(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from ats_assets.cli import main

    monkeypatch.setenv("ATS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["metrics", "--port", str(port)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"error: cannot listen on 127.0.0.1:{port}")
