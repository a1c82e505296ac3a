"""notebooks/explore.ipynb runs end to end on a small pipeline materialized here.

The pipeline is the cheapest real one: 40 simulated tickers, two weeks of March 2024, the models
of the first week (short training budgets) with its champion decision, and their backtest on the
second week, all recorded in a Dagster instance of its own. The notebook is then executed in a
fresh kernel with only the environment pointing it at that data, as a user would run it.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import replace
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from ats_assets.backtest.assets import backtest_assets
from ats_assets.core.calendar import nyse_calendar
from ats_assets.features.assets import feature_assets
from ats_assets.features.frames import sessions_before
from ats_assets.features.pipeline import DAILY_HISTORY_SESSIONS
from ats_assets.market_data.assets import market_data_assets
from ats_assets.models.assets import model_assets
from ats_resources.market_data import SimulatedMarketResource
from ats_resources.settings import Settings, build_resources

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO_ROOT / "notebooks" / "explore.ipynb"
WEEK = "2024-03-04"  # the model week; its backtest trades the week of 2024-03-11
SESSIONS = nyse_calendar().sessions_between(date(2024, 3, 4), date(2024, 3, 15))
TICKERS = 40
# Training budgets far below the defaults: the notebook needs stored models, not good ones.
FAST = {
    "lstm_model": {"config": {"epochs": 1, "max_seconds": 10}},
    "attention_model": {"config": {"epochs": 1, "max_seconds": 10}},
    "xgboost_model": {
        "config": {"n_rounds": 40, "walk_forward_folds": 0, "cross_timeframe": False}
    },
    # two weeks of 40 names make a weak model: a lower hurdle makes the engine trade
    "backtest_report": {"config": {"strategy": {"cost_multiple": 0.1}}},
}
KERNEL = "ats-notebook-test"


def _run(resources, instance, selection, first=None, last=None, partition=None) -> None:
    tags = (
        {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}
        if first
        else {}
    )
    ops = {k: v for k, v in FAST.items() if k in selection}
    result = dg.materialize(
        [*market_data_assets, *feature_assets, *model_assets, *backtest_assets],
        resources=resources,
        instance=instance,
        tags=tags,
        selection=selection,
        partition_key=partition,
        run_config={"ops": ops},
    )
    assert result.success, selection


@pytest.fixture(scope="module")
def materialized(tmp_path_factory) -> tuple[Path, Path]:
    """(data dir, DAGSTER_HOME) holding features, one model week, its champion and backtest."""
    root = tmp_path_factory.mktemp("notebook")
    data, home = root / "data", root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO_ROOT / "dagster.yaml").read_text())
    settings = replace(Settings.from_env({}), data_dir=data, sim_tickers=TICKERS)
    resources = build_resources(settings)
    resources["market_data"] = resources["options_flow_source"] = SimulatedMarketResource(
        n_tickers=TICKERS
    )
    first = sessions_before(SESSIONS[0], DAILY_HISTORY_SESSIONS)[0]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        market = ["group:market_data", "daily_bars"]
        _run(resources, instance, market, str(first), str(SESSIONS[-1]))
        _run(resources, instance, ["features"], str(SESSIONS[0]), str(SESSIONS[-1]))
        models = ["training_set", "xgboost_model", "lstm_model", "attention_model"]
        _run(resources, instance, [*models, "ensemble_model", "champion_model"], partition=WEEK)
        _run(resources, instance, ["backtest_report"], partition=WEEK)
    return data, home


def _kernelspec(folder: Path) -> None:
    """A kernel running this interpreter (the project's venv), whatever kernels are installed."""
    spec = folder / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec_json = {"argv": argv, "display_name": "ATS (test)", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(spec_json))


def _outputs(notebook) -> tuple[str, int]:
    """All printed text of the executed notebook, and how many images it drew."""
    text, images = [], 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                text.append(output["text"])
            data = output.get("data", {})
            images += "image/png" in data
            text.append(data.get("text/plain", ""))
    return "\n".join(text), images


def test_notebook_plots_features_predictions_and_backtest_from_the_asset_graph(
    materialized, tmp_path, monkeypatch
):
    import nbformat
    from nbclient import NotebookClient

    from ats_resources.warehouse import DuckDBWarehouse

    data, home = materialized
    _kernelspec(tmp_path / "jupyter")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATS_")}
    env.update(
        ATS_DATA_DIR=str(data),
        DAGSTER_HOME=str(home),
        ATS_NOTEBOOK_WEEK=WEEK,
        MPLBACKEND="module://matplotlib_inline.backend_inline",
        PYTHONWARNINGS="ignore",
    )
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name=KERNEL,
        timeout=120,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute(env=env)

    text, images = _outputs(notebook)
    assert images == 3, text
    trades = DuckDBWarehouse(path=str(data / "warehouse.duckdb")).read_window(
        "backtest_report", partition_column="week", start=date(2024, 3, 4), end=date(2024, 3, 5)
    )
    assert trades.height > 0
    pnl = float(trades["pnl"].sum())
    assert f"backtest_report {WEEK}: {trades.height} trades, P&L ${pnl:,.2f}" in text
    # the features partition plotted is the first session after the model week, the data's own
    assert "features 2024-03-11: 15,600 rows" in text
    predicted = re.search(r"predictions: ([\d,]+) rows over 5 sessions", text)
    assert predicted and int(predicted.group(1).replace(",", "")) > 0, text
    # the champion decision is read from the instance at DAGSTER_HOME as well as the warehouse
    assert f"champion_model {WEEK}: " in text
    assert "recorded in the instance by run" in text
