"""Settings read from the environment, validated once, with one-line errors that say what to fix.

Every variable is listed, with its default, in ``.env.sample`` and the README.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the variable and the fix."""


MARKET_DATA_SOURCES = ("simulated", "polygon", "alpaca")
OPTIONS_FLOW_SOURCES = ("simulated", "unusual_whales")
WAREHOUSES = ("duckdb", "postgres")
# The secret each vendor needs, by source name.
REQUIRED_SECRETS = {
    "polygon": ("POLYGON_API_KEY",),
    "alpaca": ("ALPACA_API_KEY", "ALPACA_API_SECRET"),
    "unusual_whales": ("UNUSUAL_WHALES_API_KEY",),
}
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


def _float(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not a number; set it to a number >= {minimum}"
        ) from None
    if value < minimum:
        raise ConfigError(f"{name}={value} is too small; set it to a number >= {minimum}")
    return value


def _tickers(env: Mapping[str, str]) -> tuple[str, ...]:
    """The vendor universe: ATS_TICKERS (comma-separated) or ATS_TICKERS_FILE (one per line)."""
    raw = env.get("ATS_TICKERS", "").strip()
    path = env.get("ATS_TICKERS_FILE", "").strip()
    if path:
        try:
            raw = Path(path).expanduser().read_text()
        except OSError as exc:
            raise ConfigError(
                f"ATS_TICKERS_FILE={path!r} cannot be read ({exc.strerror}); point it at a file of tickers"
            ) from None
    tickers = tuple(
        dict.fromkeys(t.strip().upper() for t in raw.replace("\n", ",").split(",") if t.strip())
    )
    bad = [t for t in tickers if not t.replace(".", "").replace("-", "").isalnum()]
    if bad:
        raise ConfigError(
            f"ATS_TICKERS holds invalid ticker(s) {bad[:5]}; use symbols like AAPL,MSFT,BRK.B"
        )
    return tickers


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
    tickers: tuple[str, ...] = ()
    training_weeks: int = 4
    # Where vendor and database settings are read from; never printed (it holds secrets).
    env: Mapping[str, str] | None = field(default=None, repr=False, compare=False)

    def get(self, name: str, default: str = "") -> str:
        return ((self.env if self.env is not None else os.environ).get(name) or default).strip()

    @property
    def duckdb_path(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        settings = cls(
            data_dir=Path(env.get("ATS_DATA_DIR", "").strip() or "data").expanduser().resolve(),
            warehouse=_choice(env, "ATS_WAREHOUSE", "duckdb", WAREHOUSES),
            market_data=_choice(env, "ATS_MARKET_DATA", "simulated", MARKET_DATA_SOURCES),
            options_flow=_choice(env, "ATS_OPTIONS_FLOW", "simulated", OPTIONS_FLOW_SOURCES),
            sim_seed=_int(env, "ATS_SIM_SEED", 7, 0),
            sim_tickers=_int(env, "ATS_SIM_TICKERS", 200, 1),
            sim_signal=_bool(env, "ATS_SIM_SIGNAL", True),
            tickers=_tickers(env),
            training_weeks=_int(env, "ATS_TRAINING_WEEKS", 4, 1),
            env=dict(env),
        )
        for source in (settings.market_data, settings.options_flow):
            for secret in REQUIRED_SECRETS.get(source, ()):
                if not env.get(secret, "").strip():
                    raise ConfigError(
                        f"{secret} is not set; {source} needs it (export it or put it in .env)"
                    )
        if settings.market_data != "simulated" and not settings.tickers:
            raise ConfigError(
                f"ATS_MARKET_DATA={settings.market_data} needs a universe: set ATS_TICKERS=AAPL,MSFT,... "
                "or ATS_TICKERS_FILE=path/to/tickers.txt"
            )
        if settings.warehouse == "postgres":
            _int(env, "TIMESCALEDB_PORT", 5432, 1)
        return settings


def _secret(settings: Settings, name: str) -> Any:
    """A secret passed as ``dagster.EnvVar`` so it is read at run time and never stored in config.

    Only settings built from an explicit mapping (tests) that the process environment lacks fall
    back to the plain value, since an ``EnvVar`` could not resolve there.
    """
    import dagster as dg

    return dg.EnvVar(name) if name in os.environ else settings.get(name)


def _warehouse(settings: Settings) -> Any:
    if settings.warehouse == "postgres":
        from ats_resources.warehouse.postgres import PostgresWarehouse

        return PostgresWarehouse(
            host=settings.get("TIMESCALEDB_HOST", "127.0.0.1"),
            port=int(settings.get("TIMESCALEDB_PORT", "5432")),
            database=settings.get("TIMESCALEDB_DATABASE", "test"),
            user=settings.get("TIMESCALEDB_USER", "postgres"),
            password=_secret(settings, "TIMESCALEDB_PASSWORD")
            if settings.get("TIMESCALEDB_PASSWORD")
            else "",
            schema_name=settings.get("TIMESCALEDB_SCHEMA", "public"),
        )
    from ats_resources.warehouse import DuckDBWarehouse

    return DuckDBWarehouse(path=str(settings.duckdb_path))


def _market_data(settings: Settings, simulated: Any) -> Any:
    tickers = list(settings.tickers)
    if settings.market_data == "polygon":
        from ats_resources.vendors.polygon import PolygonMarketData

        return PolygonMarketData(
            api_key=_secret(settings, "POLYGON_API_KEY"),
            base_url=settings.get("POLYGON_BASE_URL", "https://api.polygon.io"),
            tickers=tickers,
            requests_per_minute=_float(
                settings.env or {}, "POLYGON_REQUESTS_PER_MINUTE", 300.0, 1.0
            ),
        )
    if settings.market_data == "alpaca":
        from ats_resources.vendors.alpaca import AlpacaMarketData

        return AlpacaMarketData(
            api_key=_secret(settings, "ALPACA_API_KEY"),
            api_secret=_secret(settings, "ALPACA_API_SECRET"),
            base_url=settings.get("ALPACA_DATA_URL", "https://data.alpaca.markets"),
            feed=_choice(settings.env or {}, "ALPACA_FEED", "iex", ("iex", "sip", "delayed_sip")),
            tickers=tickers,
            requests_per_minute=_float(
                settings.env or {}, "ALPACA_REQUESTS_PER_MINUTE", 200.0, 1.0
            ),
        )
    return simulated


def _options_flow(settings: Settings, simulated: Any) -> Any:
    if settings.options_flow == "unusual_whales":
        from ats_resources.vendors.unusual_whales import UnusualWhalesOptionsFlow

        return UnusualWhalesOptionsFlow(
            api_key=_secret(settings, "UNUSUAL_WHALES_API_KEY"),
            base_url=settings.get("UNUSUAL_WHALES_BASE_URL", "https://api.unusualwhales.com"),
            requests_per_minute=_float(
                settings.env or {}, "UNUSUAL_WHALES_REQUESTS_PER_MINUTE", 120.0, 1.0
            ),
        )
    return simulated


def _feature_cache(settings: Settings) -> Any:
    from ats_resources.feature_cache import FeatureCache

    host = settings.get("REDIS_HOST")
    if not host:
        return FeatureCache()  # in process: the embedded default
    env = settings.env or {}
    return FeatureCache(
        host=host,
        port=_int(env, "REDIS_PORT", 6379, 1),
        db=_int(env, "REDIS_DB", 0, 0),
        password=_secret(settings, "REDIS_PASSWORD") if settings.get("REDIS_PASSWORD") else "",
    )


def _notifier(settings: Settings) -> Any:
    from ats_resources.notifier import notifier_resource

    return notifier_resource(settings.env if settings.env is not None else os.environ)


def build_resources(settings: Settings) -> dict[str, Any]:
    """The resource mapping for the code location, chosen by ``settings`` in this one place."""
    from ats_resources.market_data import SimulatedMarketResource
    from ats_resources.model_store import ModelStore
    from ats_resources.report_store import ReportStore
    from ats_resources.warehouse import WarehouseIOManager

    warehouse = _warehouse(settings)
    simulated = SimulatedMarketResource(
        seed=settings.sim_seed, n_tickers=settings.sim_tickers, planted_signal=settings.sim_signal
    )
    return {
        "warehouse": warehouse,
        "warehouse_io_manager": WarehouseIOManager(warehouse=warehouse),
        "market_data": _market_data(settings, simulated),
        "options_flow_source": _options_flow(settings, simulated),
        "feature_cache": _feature_cache(settings),
        "model_store": ModelStore(root=str(settings.data_dir / "models")),
        "report_store": ReportStore(root=str(settings.data_dir / "reports")),
        "notifier": _notifier(settings),
    }
