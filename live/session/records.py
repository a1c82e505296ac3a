"""What a session did, as tables: orders (with their fate), fills, rejections, account snapshots,
reconciliations and events. The Dagster layer writes them to the warehouse."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

import polars as pl

from live.backtest.simulator import order_row
from live.engine.types import Fill, Order

UTC_US = pl.Datetime("us", "UTC")
ORDER_SCHEMA = {
    "session": pl.Date,
    "client_order_id": pl.Utf8,
    "broker_order_id": pl.Utf8,
    "ticker": pl.Utf8,
    "side": pl.Utf8,
    "qty": pl.Int64,
    "order_type": pl.Utf8,
    "intent": pl.Utf8,
    "decided_at": UTC_US,
    "limit_price": pl.Float64,
    "stop_price": pl.Float64,
    "arrival_price": pl.Float64,  # last close when decided
    "status": pl.Utf8,  # submitted | duplicate (same id again) | rejected | unknown (lost answer)
    "detail": pl.Utf8,
    "signal": pl.Utf8,
}
FILL_SCHEMA = {
    "session": pl.Date,
    "client_order_id": pl.Utf8,
    "ticker": pl.Utf8,
    "side": pl.Utf8,
    "qty": pl.Int64,
    "price": pl.Float64,
    "fees": pl.Float64,
    "ts": UTC_US,
    "intent": pl.Utf8,
    "signal": pl.Utf8,
    "reference_price": pl.Float64,
}
ACCOUNT_SCHEMA = {
    "session": pl.Date,
    "ts": UTC_US,
    "equity": pl.Float64,
    "cash": pl.Float64,
    "gross_exposure": pl.Float64,
    "net_exposure": pl.Float64,
    "positions": pl.Int64,
    "halted": pl.Boolean,
}
POSITION_SCHEMA = {
    "session": pl.Date,
    "ts": UTC_US,
    "ticker": pl.Utf8,
    "qty": pl.Int64,
    "avg_price": pl.Float64,
    "mark": pl.Float64,
    "source": pl.Utf8,  # local | broker
}
EVENT_SCHEMA = {"session": pl.Date, "ts": UTC_US, "kind": pl.Utf8, "detail": pl.Utf8}


@dataclass
class SessionRecords:
    day: date
    orders: list[dict] = field(default_factory=list)
    fills: list[dict] = field(default_factory=list)
    account: list[dict] = field(default_factory=list)
    positions: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)

    def order(self, order: Order, status: str, detail: str = "", broker_id: str = "",
              arrival: float = float("nan")) -> None:  # fmt: skip
        self.orders.append(
            {
                **order_row(order),
                "session": self.day,
                "broker_order_id": broker_id,
                "arrival_price": arrival,
                "status": status,
                "detail": detail or order.reason,
            }
        )

    def fill(self, fill: Fill) -> None:
        self.fills.append(
            {
                "session": self.day,
                **{k: getattr(fill, k) for k in FILL_SCHEMA if k not in ("session", "side",
                                                                         "intent")},
                "side": fill.side.value,
                "intent": fill.intent.value,
            }
        )  # fmt: skip

    def event(self, ts: datetime, kind: str, detail: str) -> None:
        self.events.append({"session": self.day, "ts": ts, "kind": kind, "detail": detail})

    def frames(self) -> dict[str, pl.DataFrame]:
        def frame(rows, schema):
            return (
                pl.DataFrame(rows, schema=schema, orient="row")
                if rows
                else pl.DataFrame(schema=schema)
            )

        return {
            "live_orders": frame(self.orders, ORDER_SCHEMA),
            "live_fills": frame(self.fills, FILL_SCHEMA),
            "live_account": frame(self.account, ACCOUNT_SCHEMA),
            "live_positions": frame(self.positions, POSITION_SCHEMA),
            "live_events": frame(self.events, EVENT_SCHEMA),
        }
