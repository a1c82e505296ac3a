"""The portfolio allocator: best candidates first, shrunk to fit gross, net and sector caps."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from live.engine.settings import StrategySettings
from live.engine.sizing import whole_shares
from live.engine.types import Position

UNKNOWN_SECTOR = "Unknown"  # names without a sector share one bucket, so they are capped together


@dataclass(frozen=True)
class Candidate:
    """A sized entry the strategy wants: ``qty`` whole shares at ``price`` dollars.

    ``direction`` is +1 long / -1 short; a higher ``score`` is served first."""

    ticker: str
    direction: int
    qty: int
    price: float
    score: float
    sector: str
    signal: str = ""

    @property
    def notional(self) -> float:
        """Dollars of gross exposure at the requested ``qty``."""
        return self.qty * self.price


@dataclass(frozen=True)
class Rejection:
    """A candidate the allocator dropped and why (the cap it hit, with dollars)."""

    ticker: str
    reason: str


def _dollars(value: float) -> str:
    return f"-${-value:,.0f}" if value < 0 else f"${value:,.0f}"


def _priority(candidate: Candidate) -> tuple[float, str]:
    # a NaN score would make the sort order arbitrary; it goes last instead
    score = candidate.score if math.isfinite(candidate.score) else -math.inf
    return (-score, candidate.ticker)


class _Book:
    """Running gross, net and per-sector dollars of the positions plus what has been accepted."""

    def __init__(self) -> None:
        self.gross = 0.0
        self.net = 0.0
        self.sector_gross: dict[str, float] = {}

    def add(self, signed_dollars: float, sector: str) -> None:
        self.gross += abs(signed_dollars)
        self.net += signed_dollars
        self.sector_gross[sector] = self.sector_gross.get(sector, 0.0) + abs(signed_dollars)


def allocate(
    candidates: Iterable[Candidate],
    positions: Mapping[str, Position],
    prices: Mapping[str, float],
    sectors: Mapping[str, str],
    equity: float,
    settings: StrategySettings,
) -> tuple[list[Candidate], list[Rejection]]:
    """Accept candidates greedily by descending score (ties by ticker), shrinking ``qty``.

    Caps, as fractions of ``equity`` (dollars): gross (sum of |qty * price| over positions and
    accepted candidates) <= ``max_gross_exposure``; |net| <= ``max_net_exposure``, enforced only
    in the direction a candidate pushes net; each sector's gross <= ``max_sector_exposure``.
    Positions are valued at ``prices`` (falling back to ``avg_price``) and bucketed by ``sectors``.
    Returns the accepted candidates (qty possibly reduced) in priority order, and the rejections."""
    accepted: list[Candidate] = []
    rejected: list[Rejection] = []
    ordered = sorted(candidates, key=_priority)
    if not math.isfinite(equity) or equity <= 0:
        return [], [Rejection(c.ticker, f"no equity to allocate ({equity})") for c in ordered]

    book = _Book()
    for ticker, position in positions.items():
        if position.qty == 0:
            continue
        price = prices.get(ticker, math.nan)
        if not (math.isfinite(price) and price > 0):
            price = position.avg_price
        book.add(position.qty * price, sectors.get(ticker) or UNKNOWN_SECTOR)

    gross_cap = settings.max_gross_exposure * equity
    net_cap = settings.max_net_exposure * equity
    sector_cap = settings.max_sector_exposure * equity
    taken: set[str] = set()
    for candidate in ordered:
        reason = _invalid(candidate, positions, taken)
        if reason:
            rejected.append(Rejection(candidate.ticker, reason))
            continue
        sector = candidate.sector or sectors.get(candidate.ticker) or UNKNOWN_SECTOR
        sector_now = book.sector_gross.get(sector, 0.0)
        # net room on the candidate's side only: a long is never blocked by a short-heavy book
        net_room = net_cap - book.net if candidate.direction > 0 else net_cap + book.net
        # min keeps the first of equal values: gross, then net, then sector names the rejection
        cap, qty = min(
            ("gross", whole_shares(gross_cap - book.gross, candidate.price)),
            ("net", whole_shares(net_room, candidate.price)),
            ("sector", whole_shares(sector_cap - sector_now, candidate.price)),
            ("requested", candidate.qty),
            key=lambda limit: limit[1],
        )
        if qty <= 0:
            why = _cap_reason(cap, candidate, book, sector, equity, settings)
            rejected.append(Rejection(candidate.ticker, why))
            continue
        chosen = candidate if qty == candidate.qty else replace(candidate, qty=qty)
        accepted.append(chosen)
        taken.add(candidate.ticker)
        book.add(candidate.direction * chosen.notional, sector)
    return accepted, rejected


def _invalid(candidate: Candidate, positions: Mapping[str, Position], taken: set[str]) -> str:
    """Why a candidate cannot be considered at all; empty when it can."""
    held = positions.get(candidate.ticker)
    if held is not None and held.qty != 0:
        return f"already holding {held.qty} shares"
    if candidate.ticker in taken:
        return "duplicate candidate: a higher-scored one was accepted"
    if candidate.direction not in (1, -1):
        return f"invalid direction {candidate.direction} (must be +1 or -1)"
    if candidate.qty <= 0:
        return f"invalid qty {candidate.qty} (must be > 0)"
    if not (math.isfinite(candidate.price) and candidate.price > 0):
        return f"invalid price {candidate.price}"
    return ""


def _cap_reason(
    cap: str,
    candidate: Candidate,
    book: _Book,
    sector: str,
    equity: float,
    settings: StrategySettings,
) -> str:
    """The cap that left no room, with the exposure the full request would reach and the cap."""
    if cap == "gross":
        would_be = book.gross + candidate.notional
        return f"gross cap: gross {_dollars(would_be)} of {_dollars(settings.max_gross_exposure * equity)}"
    if cap == "net":
        would_be = book.net + candidate.direction * candidate.notional
        return (
            f"net cap: net {_dollars(would_be)} of ±{_dollars(settings.max_net_exposure * equity)}"
        )
    would_be = book.sector_gross.get(sector, 0.0) + candidate.notional
    return (
        f"sector cap: {sector} gross {_dollars(would_be)} of "
        f"{_dollars(settings.max_sector_exposure * equity)}"
    )
