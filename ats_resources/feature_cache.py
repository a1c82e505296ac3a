"""The live feature cache: the latest feature vector per ticker, in Redis or in process.

Keys are ``{prefix}:{catalogue_version}:{ticker}`` holding a JSON object of the feature values
and ``ts``; a new catalogue version never reads an old vector. Values expire after ``ttl_s``.
Writing all tickers and reading any set of tickers each take one round trip (a pipeline, MGET).
With no ``host`` the cache lives in this process: the embedded default for tests and demos.
"""

import json
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field, PrivateAttr

_LOCAL: dict[str, tuple[float, str]] = {}
_LOCAL_LOCK = threading.Lock()


class FeatureCache(dg.ConfigurableResource):
    host: str = Field(default="", description="Redis host; empty keeps the cache in this process.")
    port: int = 6379
    db: int = 0
    password: str = Field(default="", repr=False)
    ttl_s: int = Field(default=3 * 24 * 3600, ge=1, description="Seconds a vector stays valid.")
    prefix: str = "ats:features"
    _client: Any = PrivateAttr(default=None)

    @property
    def backend(self) -> str:
        return f"redis://{self.host}:{self.port}/{self.db}" if self.host else "in-process"

    def _redis(self):
        if self._client is None:
            import redis

            self._client = redis.Redis(
                host=self.host,
                port=self.port,
                db=self.db,
                password=self.password or None,
                socket_timeout=5,
            )
        return self._client

    def _key(self, version: str, ticker: str) -> str:
        return f"{self.prefix}:{version}:{ticker}"

    def write_latest(self, frame: pl.DataFrame, version: str) -> int:
        """Store the last row (by ``ts``) of each ticker in ``frame``; returns tickers written.

        A cached vector newer than the frame's is kept: backfilling an old day never replaces
        what live trading reads.
        """
        latest = frame.sort("ts").group_by("ticker", maintain_order=True).last()
        cached = self.read_latest(latest["ticker"].to_list(), version)
        newest = {t: datetime.fromisoformat(v["ts"]) for t, v in cached.items()}
        payloads = {
            self._key(version, row["ticker"]): json.dumps(
                {**row, "ts": row["ts"].isoformat(), "session": str(row.get("session"))},
                allow_nan=False,
                default=str,
            )
            for row in latest.fill_nan(None).iter_rows(named=True)
            if row["ticker"] not in newest or row["ts"] >= newest[row["ticker"]]
        }
        if self.host:
            pipe = self._redis().pipeline(transaction=False)
            for key, payload in payloads.items():
                pipe.set(key, payload, ex=self.ttl_s)
            pipe.execute()
        else:
            expires = time.monotonic() + self.ttl_s
            with _LOCAL_LOCK:
                _LOCAL.update({k: (expires, v) for k, v in payloads.items()})
        return len(payloads)

    def read_latest(self, tickers: Sequence[str], version: str) -> dict[str, dict]:
        """The cached vectors of ``tickers`` (missing or expired ones are absent)."""
        keys = [self._key(version, t) for t in tickers]
        if self.host:
            values = self._redis().mget(keys)
        else:
            now = time.monotonic()
            with _LOCAL_LOCK:
                values = [
                    v if (e := _LOCAL.get(k)) and (v := e[1]) and e[0] > now else None for k in keys
                ]
        return {t: json.loads(v) for t, v in zip(tickers, values, strict=True) if v is not None}
