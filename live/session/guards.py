"""Pre-trade guards every order passes on its way to the broker, whatever the engine decided.

The engine already sizes, caps and limits its decisions; these checks are the last line, against
the broker's state and the session's, and they never block an exit that reduces risk:

- kill switch: while the engine's risk manager is halted only position-reducing orders pass;
- market hours: no new risk outside the session (by the wall clock in real time);
- position cap: an entry's notional at the last price must not exceed ``max_position_size``;
- open positions: an entry must not take the positions (held + entries working) past the limit;
- buying power: an entry's notional must fit the broker's buying power less working entries.
"""

from __future__ import annotations

from dataclasses import dataclass

from live.engine.settings import StrategySettings
from live.engine.types import Intent, Order

CAP_TOLERANCE = 1e-6


@dataclass
class GuardState:
    halted: bool
    market_open: bool
    last_price: float  # the ticker's last close, dollars
    held_qty: int  # the ticker's signed position
    open_positions: int  # tickers held or with a working entry
    buying_power: float  # dollars, less what working entries already committed


def check(order: Order, state: GuardState, settings: StrategySettings) -> str | None:
    """None when ``order`` may go to the broker, else the reason it may not."""
    reduces = (
        order.intent is not Intent.ENTRY
        and (state.held_qty != 0 and (order.signed_qty * state.held_qty) < 0)
        and abs(order.signed_qty) <= abs(state.held_qty)
    )
    if reduces:
        return None  # an exit that reduces risk always goes (the broker may still refuse it)
    if not state.market_open:
        return "market closed"
    if order.intent is not Intent.ENTRY:
        return f"a {order.intent} order that does not reduce the position ({state.held_qty:+d})"
    if state.halted:
        return "kill switch: trading halted, entries refused"
    notional = order.qty * state.last_price
    if notional > settings.max_position_size * (1 + CAP_TOLERANCE):
        return (
            f"position cap: {order.qty} x ${state.last_price:,.2f} = ${notional:,.2f} "
            f"> ${settings.max_position_size:,.2f}"
        )
    if state.open_positions >= settings.max_open_positions:
        return f"open positions: {state.open_positions} >= {settings.max_open_positions}"
    if notional > state.buying_power:
        return f"buying power: ${notional:,.2f} > ${state.buying_power:,.2f} available"
    return None
