"""Collect one kind of data for many tickers with bounded concurrency, keeping per-ticker failures."""

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import polars as pl

from ats_resources.vendors.errors import VendorError


@dataclass(frozen=True)
class Fetched:
    """Rows fetched for a set of tickers, and the tickers that failed with why."""

    frame: pl.DataFrame
    failures: dict[str, str] = field(default_factory=dict)


def collect(
    tickers: Sequence[str],
    fetch_one: Callable[[str], pl.DataFrame],
    *,
    max_concurrency: int = 8,
    schema: dict[str, pl.DataType] | None = None,
) -> Fetched:
    """Call ``fetch_one`` for every ticker on at most ``max_concurrency`` threads.

    A :class:`VendorError` for one ticker is recorded and the others go on; any other exception
    is a bug and propagates.
    """

    def attempt(ticker: str) -> tuple[str, pl.DataFrame | None, str | None]:
        try:
            return ticker, fetch_one(ticker), None
        except VendorError as exc:
            return ticker, None, str(exc)

    with ThreadPoolExecutor(
        max_workers=max(1, max_concurrency), thread_name_prefix="collect"
    ) as pool:
        results = list(pool.map(attempt, tickers))
    frames = [f for _, f, _ in results if f is not None and len(f)]
    failures = {t: err for t, _, err in results if err is not None}
    if frames:
        frame = pl.concat(frames, how="vertical_relaxed")
    else:
        frame = pl.DataFrame(schema=schema) if schema else pl.DataFrame()
    return Fetched(frame=frame, failures=failures)
