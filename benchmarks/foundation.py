"""Foundation benchmark: simulated-day generation and code-location load time.

Run with ``make bench`` (or ``python -m benchmarks.foundation``); prints a table. The target from
the foundation issue is a 150-ticker simulated day in under a second.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from datetime import date

from ats_assets.core.calendar import nyse_calendar
from ats_resources.simulation.market import SimulatedMarket, SimulationConfig

DAYS = nyse_calendar().sessions_between(date(2024, 11, 1), date(2024, 11, 29))


def time_days(n_tickers: int) -> tuple[float, float, int]:
    """(first day incl. building the daily layer, median of the following days) in seconds, bars per day."""
    market = SimulatedMarket(SimulationConfig(n_tickers=n_tickers))
    began = time.perf_counter()
    first = market._generate(DAYS[0])
    cold = time.perf_counter() - began
    warm = []
    for day in DAYS[1:]:
        began = time.perf_counter()
        market._generate(day)
        warm.append(time.perf_counter() - began)
    return cold, statistics.median(warm), len(first.bars)


def time_code_location_load(repeats: int = 3) -> float:
    probe = "import time; t = time.perf_counter(); import ats_assets.definitions; print(time.perf_counter() - t)"
    runs = [
        float(
            subprocess.run(
                [sys.executable, "-c", probe], capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(repeats)
    ]
    return statistics.median(runs)


def main() -> None:
    began = time.perf_counter()
    nyse_calendar.cache_clear()
    nyse_calendar()
    calendar_s = time.perf_counter() - began
    print(f"{'measure':<48}{'value':>12}")
    print("-" * 60)
    print(f"{'calendar build (NYSE 2010-2035, library imported)':<48}{calendar_s:>11.3f}s")
    for n in (150, 200, 500):
        cold, warm, bars = time_days(n)
        print(f"{f'simulated day, {n} tickers, first (daily layer)':<48}{cold:>11.3f}s")
        print(f"{f'simulated day, {n} tickers, median of {len(DAYS) - 1}':<48}{warm:>11.3f}s")
        print(f"{f'  bars per day ({n} tickers)':<48}{bars:>12,}")
    print(
        f"{'code-location load (import ats_assets.definitions)':<48}{time_code_location_load():>11.3f}s"
    )


if __name__ == "__main__":
    main()
