"""A scriptable HTTP server on loopback: routes answer JSON, queued faults answer first.

Vendor fakes register routes (a path prefix and a function of the request) and tests queue faults
(429 with Retry-After, 5xx, a response slower than the client's timeout, truncated JSON, a reset
connection). Every request is recorded, so a test can assert what the client sent and when.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    at: float  # time.monotonic() when received
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass(frozen=True)
class Response:
    status: int = 200
    body: Any = None  # JSON-serialisable, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour for the next request whose path starts with ``path``; a path
    may name its method (``"POST /v2/orders"``). ``"drop"``: the request is carried out, then the
    answer is lost (the connection closes after ``delay_s``)."""

    kind: str  # "status" | "slow" | "truncated" | "reset" | "drop"
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    path: str = "/"
    body: Any = None


Route = Callable[[Request], Response]


class FakeVendorServer:
    """Serve ``routes`` on an ephemeral port of 127.0.0.1 until ``stop()`` (or the with-block ends)."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, Route]] = []
        self.faults: deque[Fault] = deque()
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as two writes

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                server._handle(self)

            def do_POST(self) -> None:
                server._handle(self)

            def do_DELETE(self) -> None:
                server._handle(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # -- setup -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def route(self, prefix: str, handler: Route) -> None:
        self.routes.append((prefix, handler))
        self.routes.sort(key=lambda r: -len(r[0]))  # longest prefix wins

    def fail_next(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def requests_to(self, prefix: str) -> list[Request]:
        return [r for r in self.requests if r.path.startswith(prefix)]

    def start(self) -> FakeVendorServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeVendorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serving ---------------------------------------------------------------------------
    def fault_body(self, status: int) -> Any:
        """The body a "status" fault answers with unless it brings its own (the vendor's shape)."""
        return {"status": "ERROR", "error": "fault"}

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                want_method, _, want_path = fault.path.rpartition(" ")
                if path.startswith(want_path) and want_method in ("", method):
                    self.faults.remove(fault)
                    return fault
        return None

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        request = Request(
            handler.command, parts.path, query, dict(handler.headers.items()), time.monotonic(),
            body,
        )  # fmt: skip
        with self._lock:
            self.requests.append(request)
        fault = self._take_fault(handler.command, parts.path)
        if fault and fault.kind == "reset":
            _hang_up(handler)
            return
        if fault and fault.kind == "slow":
            time.sleep(fault.delay_s)
        if fault and fault.kind == "status":
            body = fault.body or self.fault_body(fault.status)
            self._send(handler, Response(fault.status, body, fault.headers))
            return
        response = self._dispatch(request)
        if fault and fault.kind == "drop":  # done, but the answer is lost
            time.sleep(fault.delay_s)
            _hang_up(handler)
            return
        if fault and fault.kind == "truncated":
            raw = json.dumps(response.body).encode()
            response = Response(response.status, raw[: max(1, len(raw) // 2)], response.headers)
        self._send(handler, response)

    def _dispatch(self, request: Request) -> Response:
        for prefix, route in self.routes:
            if request.path.startswith(prefix):
                try:
                    return route(request)
                except Exception as exc:  # a bug in a fake must show, not look like a reset
                    return Response(
                        500, {"status": "ERROR", "error": f"fake route failed: {exc!r}"}
                    )
        return Response(404, {"status": "NOT_FOUND", "message": f"no route for {request.path}"})

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, response: Response) -> None:
        body = (
            response.body
            if isinstance(response.body, bytes)
            else json.dumps(response.body).encode()
        )
        try:
            handler.send_response(response.status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            for key, value in response.headers.items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test): nothing to do


def _hang_up(handler: BaseHTTPRequestHandler) -> None:
    handler.close_connection = True
    handler.connection.close()
