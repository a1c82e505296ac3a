"""A network guard for vendor tests: nothing but loopback may be looked up or connected to.

Import the fixture into a test module (``from tests.fakes.network import blocked_hosts``); it is
autouse there, and returns the hosts it refused so a test can assert none was tried.
"""

import ipaddress
import socket

import pytest


@pytest.fixture(autouse=True)
def blocked_hosts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Refuse every name lookup and connection that is not loopback; returns what was refused."""
    refused: list[str] = []
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def loopback(host: object) -> bool:
        if host in ("localhost", None):
            return True
        try:
            return ipaddress.ip_address(str(host)).is_loopback
        except ValueError:
            return False

    def getaddrinfo(host, *args, **kwargs):
        if not loopback(host):
            refused.append(str(host))
            raise socket.gaierror(f"test network guard: {host} is not loopback")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not loopback(host):
            refused.append(str(host))
            raise ConnectionRefusedError(f"test network guard: {host} is not loopback")
        return real_connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    return refused
