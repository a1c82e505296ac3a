"""Gates for tests that need a local service (PostgreSQL, Redis).

``require_postgres()`` / ``require_redis()`` return how to connect when the service answers within
two seconds. When it does not, the test is skipped on a workstation and fails under ``CI=true``,
where the services are part of the job and a silent skip would hide a broken setup. Mark such
tests ``@pytest.mark.integration``.
"""

import os

import psycopg
import pytest
import redis


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def _unavailable(service: str, where: str, reason: str, variables: str) -> None:
    if _in_ci():
        pytest.fail(f"{service} is required in CI: {reason}", pytrace=False)
    pytest.skip(f"{service} not reachable at {where} ({reason}); start it or set {variables}")


def _reason(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def postgres_settings() -> dict:
    """psycopg connection keyword arguments from ``TIMESCALEDB_*`` (the app's variables)."""
    return {
        "host": os.environ.get("TIMESCALEDB_HOST", "127.0.0.1"),
        "port": int(os.environ.get("TIMESCALEDB_PORT", "5432")),
        "dbname": os.environ.get("TIMESCALEDB_DATABASE", "test"),
        "user": os.environ.get("TIMESCALEDB_USER", "postgres"),
        "password": os.environ.get("TIMESCALEDB_PASSWORD", ""),
    }


def require_postgres() -> dict:
    """psycopg ``connect`` keyword arguments of a reachable server, or skip (fail in CI)."""
    settings = postgres_settings()
    try:
        psycopg.connect(**settings, connect_timeout=2).close()
    except (psycopg.Error, OSError) as exc:
        reason = _reason(exc)
        if settings["password"]:
            reason = reason.replace(settings["password"], "***")
        _unavailable(
            "PostgreSQL", f"{settings['host']}:{settings['port']}", reason, "TIMESCALEDB_*"
        )
    return settings


def redis_settings() -> dict:
    return {
        "host": os.environ.get("REDIS_HOST", "127.0.0.1"),
        "port": int(os.environ.get("REDIS_PORT", "6379")),
    }


def require_redis() -> dict:
    """``redis.Redis`` keyword arguments (host, port) of a reachable server, or skip (fail in CI)."""
    settings = redis_settings()
    client = redis.Redis(**settings, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        _unavailable("Redis", f"{settings['host']}:{settings['port']}", _reason(exc), "REDIS_*")
    finally:
        client.close()
    return settings
