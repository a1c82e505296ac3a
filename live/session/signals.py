"""The model's signals on each sampled bar's close, computed as the bars arrive.

On a sampled minute (every ``sample_minutes`` of the session, the rows the models were trained
on) the updater takes that minute's feature rows of the tickers the engine can act on (the focus
list and any held ticker), with each ticker's earlier sampled rows of the session as the sequence
models' history, predicts, and writes expected return, confidence and cost into the
:class:`~live.engine.strategy.SignalPanel` row of that bar. Between sampled minutes the row
stays NaN, exactly as in the backtest's signal panel.

``features_at(ts)`` returns the feature rows whose bar opened at ``ts`` (all tickers); in replay
they are the warehouse's (computed by the ``features`` asset, which uses only bars completed by
``ts``), in real time they are computed on the session's bars so far.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import numpy as np
import polars as pl

from live.engine.strategy import SignalPanel


class SignalUpdater:
    def __init__(
        self,
        predictor,
        tickers: list[str],
        rows: int,
        features_at: Callable[[datetime], pl.DataFrame],
        cost_bps: Callable[[pl.DataFrame], pl.DataFrame],
        sampled: Callable[[datetime], bool],
        history_rows: int = 1,
        columns: list[str] | None = None,
    ) -> None:
        """``cost_bps(rows)`` -> ticker, ts, cost_bps (round-trip cost of each row);
        ``sampled(ts)`` says whether the bar opening at ``ts`` is a sampled minute;
        ``predictor.predict(frame, at=ts)`` returns the rows at ``ts`` (the rest is history)."""
        self.predictor = predictor
        self.column = {t: j for j, t in enumerate(tickers)}
        self.signals = SignalPanel.empty(rows, len(tickers))
        self.features_at = features_at
        self.cost_bps = cost_bps
        self.sampled = sampled
        self.history_rows = max(1, history_rows)
        self.columns = columns  # the model's inputs (None: keep every column)
        self._history: list[pl.DataFrame] = []
        self.predictions: list[pl.DataFrame] = []

    def update(self, row: int, ts: datetime, tickers: set[str]) -> int:
        """Signals of bar ``row`` (opened at ``ts``) for ``tickers``; returns rows predicted."""
        if not self.sampled(ts):
            return 0
        now = self.features_at(ts)
        if now.is_empty():
            return 0
        costs = self.cost_bps(now)
        if self.columns is not None:  # keep only what the model reads: less to copy per bar
            now = now.select(
                [c for c in ("session", "ticker", "ts", *self.columns) if c in now.columns]
            )
        self._history.append(now)
        if len(self._history) > self.history_rows:
            self._history.pop(0)
        wanted = sorted(tickers)
        if not wanted:
            return 0
        frame = pl.concat(self._history, how="diagonal_relaxed").filter(
            pl.col("ticker").is_in(wanted)
        )
        if frame.is_empty():
            return 0
        predicted = self.predictor.predict(frame, at=ts).join(
            costs, on=["ticker", "ts"], how="left"
        )
        self.predictions.append(predicted)
        cols = np.array([self.column[t] for t in predicted["ticker"]])
        for name in ("expected_bps", "confidence", "cost_bps"):
            values = predicted[name].cast(pl.Float64).fill_null(np.nan).to_numpy()
            getattr(self.signals, name)[row, cols] = values
        return predicted.height

    def predictions_frame(self) -> pl.DataFrame:
        return (
            pl.concat(self.predictions, how="diagonal_relaxed")
            if self.predictions
            else pl.DataFrame()
        )
