"""Training benchmark: each model on a fixed window, then inference for 40 tickers.

Run with ``make bench-train``. The window is 150 simulated tickers x 60 sessions of features,
sampled every 5 minutes (the training set's rows). Each model trains in a fresh process that
reads the training rows from Parquet, so its peak memory (input included) is its own. Inference:
the XGBoost model, a sequence model and the ensemble each predict the latest row of 40 tickers
(with the 12 rows of history a sequence model reads) in one call; the median of 20 calls.
"""

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TICKERS = 150
SESSIONS = 60
FOCUS = 40
KINDS = ("xgboost", "lstm", "attention")


def _write_rows(folder: Path) -> dict:
    from datetime import date

    import polars as pl

    from ats_assets.core.calendar import nyse_calendar
    from ats_assets.features.frames import minute_frame, resample
    from ats_assets.features.pipeline import DAILY_HISTORY_SESSIONS, compute_days
    from ats_assets.features.registry import catalogue
    from ats_assets.models.dataset import with_excess_return
    from ats_assets.models.labels import LabelSpec, training_rows
    from ats_resources.simulation.market import SimulatedMarket, SimulationConfig

    began = time.perf_counter()
    market = SimulatedMarket(SimulationConfig(n_tickers=TICKERS))
    days = nyse_calendar().sessions_between(date(2024, 1, 2), date(2024, 12, 31))
    history = days[: DAILY_HISTORY_SESSIONS + SESSIONS]
    frames = {
        kind: pl.concat(
            [getattr(market.day(d), kind).with_columns(session=pl.lit(d)) for d in history]
        )
        for kind in ("bars", "quotes", "trades", "options_flow")
    }
    minute = minute_frame(
        frames["bars"], frames["quotes"], frames["trades"], frames["options_flow"]
    )
    daily = resample(minute, "1d")
    wanted = history[DAILY_HISTORY_SESSIONS:]
    parts = []
    for i in range(0, len(wanted), 5):
        features = compute_days(minute, daily, wanted[i : i + 5], catalogue())
        parts.append(training_rows(features, frames["bars"], LabelSpec()))
    rows = with_excess_return(pl.concat(parts))
    rows.write_parquet(folder / "rows.parquet")
    return {"rows": len(rows), "seconds": time.perf_counter() - began}


def _peak_rss_mb() -> float:
    """This process's own peak resident memory.

    Not ``getrusage``: on Linux its ``ru_maxrss`` survives ``fork``/``exec``, so a child would
    report the parent's (larger) peak. ``VmHWM`` belongs to the process's own address space.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _train(folder: str, kind: str) -> None:
    """Child process: train one model kind, save it, print JSON."""
    import polars as pl

    from ats_assets.models.dataset import to_matrix
    from ats_assets.models.serving import serving_files
    from ats_assets.models.training import TrainingConfig, fit

    data = to_matrix(pl.read_parquet(Path(folder) / "rows.parquet"))
    began = time.perf_counter()
    trained = fit(data, kind, TrainingConfig())
    seconds = time.perf_counter() - began
    model_dir = Path(folder) / kind
    model_dir.mkdir()
    for name, content in serving_files(trained).items():
        (model_dir / name).write_bytes(content)
    print(
        json.dumps(
            {
                "kind": kind,
                "train_rows": trained.details["train_rows"],
                "seconds": seconds,
                "device": trained.device,
                "validation_ic": trained.validation["ic"],
                "peak_rss_mb": _peak_rss_mb(),
            }
        )
    )


def _infer(folder: str) -> None:
    """Child process: batch inference for the latest row of FOCUS tickers; print JSON."""
    import statistics

    import polars as pl

    from ats_assets.models.serving import EnsemblePredictor, Predictor

    rows = pl.read_parquet(Path(folder) / "rows.parquet")
    tickers = rows["ticker"].unique().sort().head(FOCUS)
    recent = rows.filter(pl.col("ticker").is_in(tickers.implode())).sort("ticker", "ts")
    recent = recent.group_by("ticker", maintain_order=True).tail(12)
    predictors = {}
    for kind in KINDS:
        files = {p.name: p.read_bytes() for p in (Path(folder) / kind).iterdir()}
        predictors[kind] = Predictor.from_files(files)
    predictors["ensemble"] = EnsemblePredictor(
        [predictors[k] for k in KINDS], [1 / 3] * 3, threshold=1.0
    )
    out = {}
    for name, predictor in predictors.items():
        predictor.predict(recent)  # warm-up
        timings = []
        for _ in range(20):
            began = time.perf_counter()
            predictions = predictor.predict(recent)
            timings.append(time.perf_counter() - began)
        assert predictions["ticker"].n_unique() == FOCUS
        out[name] = statistics.median(timings) * 1000
    print(json.dumps(out))


def _child(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.train", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        made = _write_rows(Path(folder))
        print(
            f"training window: {TICKERS} tickers x {SESSIONS} sessions, 5-minute rows: "
            f"{made['rows']:,} rows (features and labels built in {made['seconds']:.0f} s)"
        )
        print(f"{'model':<11}{'train rows':>12}{'train s':>10}{'peak MB':>10}{'val IC':>9}  device")
        for kind in KINDS:
            r = _child("--train", folder, kind)
            print(
                f"{kind:<11}{r['train_rows']:>12,}{r['seconds']:>10.1f}{r['peak_rss_mb']:>10.0f}"
                f"{r['validation_ic']:>9.4f}  {r['device']}"
            )
        timings = _child("--infer", folder)
        print(f"inference, latest row of {FOCUS} tickers in one call (median of 20):")
        for name, ms in timings.items():
            print(f"  {name:<11}{ms:>8.1f} ms")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--train":
        _train(sys.argv[2], sys.argv[3])
    elif len(sys.argv) > 1 and sys.argv[1] == "--infer":
        _infer(sys.argv[2])
    else:
        main()
