"""Settings read from the environment, validated once, with one-line errors that say what to fix.

Every variable is listed, with its default, in ``.env.sample`` and the README.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the variable and the fix."""


MARKET_DATA_SOURCES = ("simulated",)
OPTIONS_FLOW_SOURCES = ("simulated",)
WAREHOUSES = ("duckdb",)
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name, default).strip().lower() or default
    if value not in allowed:
        raise ConfigError(
            f"{name}={value!r} is not a known choice; set it to one of: {', '.join(allowed)}"
        )
    return value


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not a whole number; set it to an integer >= {minimum}"
        ) from None
    if value < minimum:
        raise ConfigError(f"{name}={value} is too small; set it to an integer >= {minimum}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in _TRUE | _FALSE:
        raise ConfigError(f"{name}={raw!r} is not on/off; set it to one of: true, false, 1, 0")
    return raw in _TRUE


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    warehouse: str
    market_data: str
    options_flow: str
    sim_seed: int
    sim_tickers: int
    sim_signal: bool

    @property
    def duckdb_path(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            data_dir=Path(env.get("ATS_DATA_DIR", "").strip() or "data").expanduser().resolve(),
            warehouse=_choice(env, "ATS_WAREHOUSE", "duckdb", WAREHOUSES),
            market_data=_choice(env, "ATS_MARKET_DATA", "simulated", MARKET_DATA_SOURCES),
            options_flow=_choice(env, "ATS_OPTIONS_FLOW", "simulated", OPTIONS_FLOW_SOURCES),
            sim_seed=_int(env, "ATS_SIM_SEED", 7, 0),
            sim_tickers=_int(env, "ATS_SIM_TICKERS", 200, 1),
            sim_signal=_bool(env, "ATS_SIM_SIGNAL", True),
        )


def build_resources(settings: Settings) -> dict[str, Any]:
    """The resource mapping for the code location, chosen by ``settings`` in this one place."""
    from ats_resources.market_data import SimulatedMarketResource
    from ats_resources.warehouse import DuckDBWarehouse, WarehouseIOManager

    warehouse = DuckDBWarehouse(path=str(settings.duckdb_path))
    simulated = SimulatedMarketResource(
        seed=settings.sim_seed, n_tickers=settings.sim_tickers, planted_signal=settings.sim_signal
    )
    return {
        "warehouse": warehouse,
        "warehouse_io_manager": WarehouseIOManager(warehouse=warehouse),
        "market_data": simulated,
        "options_flow_source": simulated,
    }
