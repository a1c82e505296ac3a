"""The portfolio allocator: score order, held names, and the gross, net and sector caps."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from live.engine.allocation import Candidate, Rejection, allocate
from live.engine.settings import StrategySettings
from live.engine.types import Position

# $100k equity: gross cap $100,000, net cap ±$50,000, sector cap $25,000
EQUITY = 100_000.0
SETTINGS = StrategySettings()
OPENED = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)


def cand(ticker, direction=1, qty=100, price=25.0, score=1.0, sector="Technology"):
    return Candidate(ticker, direction, qty, price, score, sector)


def held(ticker, qty, avg_price=25.0):
    return Position(ticker, qty, avg_price, OPENED)


def only_caps(**caps) -> StrategySettings:
    """Settings where only the named caps can bind (the others at 10 times equity)."""
    loose = {"max_gross_exposure": 10.0, "max_net_exposure": 10.0, "max_sector_exposure": 10.0}
    return replace(SETTINGS, **{**loose, **caps})


def test_candidates_are_accepted_in_descending_score():
    accepted, rejected = allocate(
        [cand("AAA", score=0.2), cand("BBB", score=0.9), cand("CCC", score=0.5)],
        {},
        {},
        {},
        EQUITY,
        SETTINGS,
    )
    assert [c.ticker for c in accepted] == ["BBB", "CCC", "AAA"]
    assert rejected == []


def test_equal_scores_are_served_by_ticker():
    big = 600  # $15,000 each: the second in the sector gets only $10,000
    accepted, _ = allocate(
        [cand("ZZZ", qty=big), cand("AAA", qty=big)], {}, {}, {}, EQUITY, SETTINGS
    )
    assert [(c.ticker, c.qty) for c in accepted] == [("AAA", 600), ("ZZZ", 400)]


def test_a_ticker_already_held_is_rejected():
    accepted, rejected = allocate(
        [cand("AAPL")], {"AAPL": held("AAPL", 10)}, {}, {}, EQUITY, SETTINGS
    )
    assert accepted == []
    assert rejected == [Rejection("AAPL", "already holding 10 shares")]


def test_a_duplicate_candidate_keeps_only_the_better_one():
    accepted, rejected = allocate(
        [cand("AAPL", score=0.3), cand("AAPL", score=0.8, qty=50)], {}, {}, {}, EQUITY, SETTINGS
    )
    assert accepted == [cand("AAPL", score=0.8, qty=50)]
    assert rejected == [Rejection("AAPL", "duplicate candidate: a higher-scored one was accepted")]


def test_sector_cap_shrinks_a_candidate_to_the_room_left():
    # Technology holds 920 * $25 = $23,000; $2,000 of room is 80 shares
    accepted, _ = allocate(
        [cand("NVDA")],
        {"MSFT": held("MSFT", 920)},
        {"MSFT": 25.0},
        {"MSFT": "Technology"},
        EQUITY,
        SETTINGS,
    )
    assert accepted == [cand("NVDA", qty=80)]


def test_sector_cap_rejects_when_no_share_fits():
    # $22,500 held + $2,500 accepted fills the $25,000 sector; the next would reach $27,500
    accepted, rejected = allocate(
        [cand("NVDA", score=0.9), cand("AMD", score=0.5)],
        {"MSFT": held("MSFT", 900)},
        {"MSFT": 25.0},
        {"MSFT": "Technology"},
        EQUITY,
        SETTINGS,
    )
    assert accepted == [cand("NVDA", score=0.9)]
    assert rejected == [Rejection("AMD", "sector cap: Technology gross $27,500 of $25,000")]


def test_other_sectors_do_not_use_a_sectors_room():
    accepted, _ = allocate(
        [cand("NVDA")],
        {"XOM": held("XOM", 960)},
        {"XOM": 25.0},
        {"XOM": "Energy"},
        EQUITY,
        SETTINGS,
    )
    assert accepted == [cand("NVDA")]


def test_shorts_count_toward_sector_gross():
    # a -$24,000 short in Technology leaves $1,000 of gross room: 40 shares
    accepted, _ = allocate(
        [cand("NVDA")],
        {"MSFT": held("MSFT", -960)},
        {"MSFT": 25.0},
        {"MSFT": "Technology"},
        EQUITY,
        SETTINGS,
    )
    assert accepted == [cand("NVDA", qty=40)]


def test_positions_are_valued_at_current_prices():
    # 1,000 shares bought at $20 now trade at $24: $24,000, leaving $1,000 (40 shares)
    accepted, _ = allocate(
        [cand("NVDA")],
        {"MSFT": held("MSFT", 1000, avg_price=20.0)},
        {"MSFT": 24.0},
        {"MSFT": "Technology"},
        EQUITY,
        SETTINGS,
    )
    assert accepted == [cand("NVDA", qty=40)]


def test_positions_without_a_price_are_valued_at_their_average_price():
    # 1,000 shares at $22 average: $22,000, leaving $3,000 (120 shares)
    accepted, _ = allocate(
        [cand("NVDA", qty=200)],
        {"MSFT": held("MSFT", 1000, avg_price=22.0)},
        {},
        {"MSFT": "Technology"},
        EQUITY,
        SETTINGS,
    )
    assert accepted == [cand("NVDA", qty=120)]


def test_gross_cap_shrinks_then_rejects():
    # gross cap $50,000; a $24,000 long and a $24,000 short leave $2,000 (80 shares), net is 0
    settings = only_caps(max_gross_exposure=0.5)
    accepted, rejected = allocate(
        [cand("NVDA", score=0.9), cand("AMD", score=0.5)],
        {"XOM": held("XOM", 960), "CVX": held("CVX", -960)},
        {"XOM": 25.0, "CVX": 25.0},
        {"XOM": "Energy", "CVX": "Energy"},
        EQUITY,
        settings,
    )
    assert accepted == [cand("NVDA", qty=80, score=0.9)]
    assert rejected == [Rejection("AMD", "gross cap: gross $52,500 of $50,000")]


def test_net_cap_shrinks_a_long_when_the_book_is_long():
    # net cap $50,000; $47,500 long leaves $2,500 (100 of 200 shares)
    accepted, _ = allocate(
        [cand("NVDA", qty=200)],
        {"XOM": held("XOM", 1900)},
        {"XOM": 25.0},
        {"XOM": "Energy"},
        EQUITY,
        only_caps(max_net_exposure=0.5),
    )
    assert accepted == [cand("NVDA", qty=100)]


def test_net_cap_does_not_limit_a_short_that_reduces_a_long_book():
    accepted, rejected = allocate(
        [cand("NVDA", direction=-1, qty=200)],
        {"XOM": held("XOM", 1900)},
        {"XOM": 25.0},
        {"XOM": "Energy"},
        EQUITY,
        only_caps(max_net_exposure=0.5),
    )
    assert accepted == [cand("NVDA", direction=-1, qty=200)]
    assert rejected == []


def test_net_cap_rejects_a_short_when_the_book_is_at_the_short_limit():
    # -$50,000 net: a short would reach -$52,500; a long is still welcome
    accepted, rejected = allocate(
        [cand("NVDA", direction=-1, score=0.9), cand("AMD", direction=1, score=0.5)],
        {"XOM": held("XOM", -2000)},
        {"XOM": 25.0},
        {"XOM": "Energy"},
        EQUITY,
        only_caps(max_net_exposure=0.5),
    )
    assert accepted == [cand("AMD", direction=1, score=0.5)]
    assert rejected == [Rejection("NVDA", "net cap: net -$52,500 of ±$50,000")]


def test_accepted_candidates_use_up_the_room_of_later_ones():
    # net cap $50,000: 1,800 + 1,800 shares at $25 = $90,000 would exceed it; the second gets 200
    accepted, _ = allocate(
        [cand("AAA", qty=1800, score=0.9), cand("BBB", qty=1800, score=0.5)],
        {},
        {},
        {},
        EQUITY,
        only_caps(max_net_exposure=0.5),
    )
    assert [(c.ticker, c.qty) for c in accepted] == [("AAA", 1800), ("BBB", 200)]


def test_the_tightest_cap_names_the_rejection():
    # gross has $10,000 of room but the Technology sector none
    accepted, rejected = allocate(
        [cand("NVDA")],
        {"MSFT": held("MSFT", 3600)},
        {"MSFT": 25.0},
        {"MSFT": "Technology"},
        EQUITY,
        replace(SETTINGS, max_net_exposure=1.0),
    )
    assert accepted == []
    assert rejected == [Rejection("NVDA", "sector cap: Technology gross $92,500 of $25,000")]


def test_no_equity_rejects_every_candidate():
    accepted, rejected = allocate([cand("NVDA")], {}, {}, {}, 0.0, SETTINGS)
    assert accepted == []
    assert rejected == [Rejection("NVDA", "no equity to allocate (0.0)")]


def test_a_candidate_with_a_bad_direction_is_rejected():
    _, rejected = allocate([cand("NVDA", direction=0)], {}, {}, {}, EQUITY, SETTINGS)
    assert rejected == [Rejection("NVDA", "invalid direction 0 (must be +1 or -1)")]
