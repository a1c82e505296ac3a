"""``live`` is plain Python: importing any of its modules loads no dagster, torch or xgboost.

``live.location`` is the exception by design: it is the code location's Dagster layer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

HEAVY = ("dagster", "torch", "xgboost")

# run in a fresh interpreter: this test process has dagster loaded already (conftest)
PROBE = f"""
import importlib, json, pkgutil, sys
import live
names = ["live"] + [
    m.name for m in pkgutil.walk_packages(live.__path__, "live.")
    if not m.name.startswith("live.location")
]
for name in names:
    importlib.import_module(name)
print(json.dumps({{"modules": names, "heavy": [h for h in {HEAVY!r} if h in sys.modules]}}))
"""


def probe() -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_every_live_module_loads_no_dagster_torch_or_xgboost():
    found = probe()

    assert {
        "live.engine.strategy",
        "live.backtest.simulator",
        "live.session.runner",
        "live.brokers.alpaca",
    } <= set(found["modules"])
    assert found["heavy"] == []
