"""backtesting.py as the reference backtester: the simple signal strategy on one ticker column.

Used by the reference-agreement test and by ``make bench-backtest`` (backtesting.py is a dev-only
dependency). Orders fill at the next bar's open (``trade_on_close=False``), a fixed commission per
order, enough cash that it never binds; exits are read before entries, as ``SignalStrategy`` does.
"""

import numpy as np
import pandas as pd

from live.backtest.panel import MinutePanel


def ticker_frame(panel: MinutePanel, j: int) -> pd.DataFrame:
    """Ticker column ``j`` of ``panel`` as backtesting.py's OHLCV frame."""
    return pd.DataFrame(
        {
            "Open": panel.open[:, j],
            "High": panel.high[:, j],
            "Low": panel.low[:, j],
            "Close": panel.close[:, j],
            "Volume": panel.volume[:, j],
        },
        index=pd.DatetimeIndex(panel.ts),
    )


def run_reference(
    data: pd.DataFrame, entries: np.ndarray, exits: np.ndarray, size: int, commission: float
) -> pd.Series:
    """backtesting.py's stats (its ``_trades`` frame included) for one ticker's signals."""
    from backtesting import Backtest, Strategy

    class Signals(Strategy):
        entry = None
        exit = None

        def init(self) -> None:
            return None

        def next(self) -> None:
            i = len(self.data) - 1
            if self.position:
                if self.exit[i]:
                    self.position.close()
            elif self.entry[i] and not self.exit[i]:
                self.buy(size=size)

    backtest = Backtest(
        data,
        Signals,
        cash=1e9,
        commission=lambda order_size, price: commission,
        trade_on_close=False,
        finalize_trades=True,
    )
    return backtest.run(entry=entries, exit=exits)
