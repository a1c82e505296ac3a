"""The live feature cache: Redis (the local server) and the in-process fallback."""

import uuid
from datetime import UTC, date, datetime

import polars as pl
import pytest
import redis

from ats_resources.feature_cache import FeatureCache
from tests.services import require_redis

DAY = date(2024, 3, 5)


def frame(tickers: list[str], value: float = 1.0) -> pl.DataFrame:
    rows = [
        {
            "session": DAY,
            "ticker": t,
            "ts": datetime(2024, 3, 5, 20, m, tzinfo=UTC),
            "rsi_14_1m": value + m,
        }
        for t in tickers
        for m in (58, 59)
    ]
    return pl.DataFrame(rows)


@pytest.fixture
def redis_cache():
    settings = require_redis()
    prefix = f"ats-test:{uuid.uuid4().hex[:8]}"
    cache = FeatureCache(host=settings["host"], port=settings["port"], prefix=prefix, ttl_s=120)
    yield cache
    client = redis.Redis(**settings)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


class CountingRedis:
    """Counts round trips made through a real client."""

    def __init__(self, client):
        self.client, self.round_trips = client, 0

    def mget(self, keys):
        self.round_trips += 1
        return self.client.mget(keys)

    def pipeline(self, transaction=False):
        outer, pipe = self, self.client.pipeline(transaction=transaction)

        class Pipe:
            def set(self, *args, **kwargs):
                pipe.set(*args, **kwargs)

            def execute(self):
                outer.round_trips += 1
                return pipe.execute()

        return Pipe()


@pytest.mark.integration
def test_the_latest_vector_per_ticker_round_trips_through_redis(redis_cache):
    tickers = [f"T{i:03d}" for i in range(150)]
    assert redis_cache.write_latest(frame(tickers), "v1") == 150
    vectors = redis_cache.read_latest(tickers, "v1")
    assert set(vectors) == set(tickers)
    assert vectors["T007"]["rsi_14_1m"] == 60.0  # the 20:59 row, not 20:58
    assert vectors["T007"]["ts"].startswith("2024-03-05T20:59")


@pytest.mark.integration
def test_150_tickers_are_read_in_one_round_trip_and_written_in_two(redis_cache):
    tickers = [f"T{i:03d}" for i in range(150)]
    counting = CountingRedis(redis_cache._redis())
    redis_cache._client = counting
    redis_cache.write_latest(frame(tickers), "v1")
    redis_cache.read_latest(tickers, "v1")
    assert counting.round_trips == 3  # write: read what is cached, then one pipeline; read: MGET


@pytest.mark.integration
def test_vectors_expire_after_the_ttl_and_keys_carry_the_version(redis_cache):
    redis_cache.write_latest(frame(["AAA"]), "v1")
    client = redis_cache._redis()
    key = f"{redis_cache.prefix}:v1:AAA"
    assert 0 < client.ttl(key) <= 120
    assert redis_cache.read_latest(["AAA"], "v2") == {}


@pytest.mark.integration
def test_missing_tickers_are_absent_not_errors(redis_cache):
    redis_cache.write_latest(frame(["AAA"]), "v1")
    assert set(redis_cache.read_latest(["AAA", "ZZZ"], "v1")) == {"AAA"}


def test_without_redis_the_cache_lives_in_process():
    cache = FeatureCache(prefix=f"ats-test:{uuid.uuid4().hex[:8]}")
    assert cache.backend == "in-process"
    cache.write_latest(frame(["AAA", "BBB"], value=3.0), "v1")
    assert cache.read_latest(["AAA", "BBB", "CCC"], "v1")["BBB"]["rsi_14_1m"] == 62.0
    assert cache.read_latest(["AAA"], "v2") == {}


def test_in_process_vectors_expire():
    cache = FeatureCache(prefix=f"ats-test:{uuid.uuid4().hex[:8]}", ttl_s=1)
    cache.write_latest(frame(["AAA"]), "v1")
    import time

    time.sleep(1.1)
    assert cache.read_latest(["AAA"], "v1") == {}


def test_nan_values_are_stored_as_null():
    cache = FeatureCache(prefix=f"ats-test:{uuid.uuid4().hex[:8]}")
    cache.write_latest(frame(["AAA"]).with_columns(rsi_14_1m=pl.lit(float("nan"))), "v1")
    assert cache.read_latest(["AAA"], "v1")["AAA"]["rsi_14_1m"] is None


def test_an_older_vector_never_replaces_a_newer_one():
    cache = FeatureCache(prefix=f"ats-test:{uuid.uuid4().hex[:8]}")
    cache.write_latest(frame(["AAA"], value=5.0), "v1")
    older = frame(["AAA"], value=1.0).with_columns(pl.col("ts") - pl.duration(days=1))
    assert cache.write_latest(older, "v1") == 0
    assert cache.read_latest(["AAA"], "v1")["AAA"]["rsi_14_1m"] == 64.0
