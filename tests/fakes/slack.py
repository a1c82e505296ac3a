"""A fake Slack on 127.0.0.1: an incoming webhook and the ``chat.postMessage`` Web API method.

Wire format, as Slack documents it:

* Webhook ``POST /services/T…/B…/{secret}`` with a JSON body answers ``200 ok`` (text/html); its
  errors are a status and a short text body: ``400 invalid_payload`` (no text or blocks, or
  not JSON), ``400 invalid_blocks`` (over Block Kit limits), ``403 invalid_token`` (revoked),
  ``404 no_service`` (unknown URL), ``410 channel_is_archived``, ``429`` with ``Retry-After``
  and ``500``.
* ``POST /api/chat.postMessage`` with ``Authorization: Bearer xoxb-…`` and a JSON (or form) body
  answers 200 with ``{"ok": true, "channel": …, "ts": …, "message": …}`` or
  ``{"ok": false, "error": "channel_not_found" | "invalid_auth" | "not_authed" | "no_text"}``;
  rate limits are ``429`` with ``Retry-After`` and ``{"ok": false, "error": "ratelimited"}``.

Tests turn on ``revoked`` or ``archived``, or queue one-off failures with
:meth:`SlackFake.fail_next`. ``messages`` holds what Slack accepted (a channel would show it);
``server.requests`` every attempt.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl

from tests.fakes.vendor_server import FakeVendorServer, Fault, Request, Response

WEBHOOK_PATH = "/services/T0ATS0000/B0ATS0000/fakeWebhookSecret0123456789"
API_PATH = "/api/chat.postMessage"
BOT_TOKEN = "xoxb-0000000000-0000000000000-fakeBotTokenSecret0123"
WEBHOOK_CHANNEL = "#ats-alerts"  # the channel a webhook is bound to when it is created
WEBHOOK_ERRORS = {
    400: "invalid_payload",
    403: "invalid_token",
    404: "no_service",
    410: "channel_is_archived",
    429: "too_many_requests",
    500: "rollup_error",
}
# Block Kit limits Slack enforces (characters; items per section).
HEADER_MAX, TEXT_MAX, FIELDS_MAX, FIELD_MAX, BLOCKS_MAX = 150, 3000, 10, 2000, 50


@dataclass(frozen=True)
class SlackMessage:
    """A message Slack accepted: how it came (``webhook`` or ``api``), where to, and its payload."""

    via: str
    channel: str
    payload: dict[str, Any]
    token: str | None = None

    @property
    def text(self) -> str:
        """Everything a reader sees: the fallback text and every block's text, joined."""
        return "\n".join([self.payload.get("text") or "", *_block_texts(self.payload)])


def _block_texts(payload: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for block in payload.get("blocks") or []:
        if isinstance(block.get("text"), dict):
            out.append(block["text"].get("text", ""))
        out.extend(f.get("text", "") for f in block.get("fields") or [])
        out.extend(e.get("text", "") for e in block.get("elements") or [])
    return out


def blocks_problem(blocks: Any) -> str | None:
    """Why Slack would reject ``blocks`` (``invalid_blocks``), or None."""
    if not isinstance(blocks, list) or len(blocks) > BLOCKS_MAX:
        return "blocks must be a list of at most 50"
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            if block["text"].get("type") != "plain_text" or len(block["text"]["text"]) > HEADER_MAX:
                return "header text must be plain_text of at most 150 characters"
        elif kind == "section":
            text, fields = block.get("text"), block.get("fields") or []
            if not text and not fields:
                return "a section needs text or fields"
            if text and len(text.get("text", "")) > TEXT_MAX:
                return "section text over 3000 characters"
            if len(fields) > FIELDS_MAX or any(len(f.get("text", "")) > FIELD_MAX for f in fields):
                return "at most 10 fields of at most 2000 characters"
        elif kind != "context":
            return f"unsupported block type {kind!r}"
    return None


class SlackServer(FakeVendorServer):
    """A :class:`FakeVendorServer` whose routes can read the POST body, answering text bodies
    as text/html (Slack's webhook responses) and JSON as application/json."""

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    def body(self) -> bytes:
        """The body of the request being handled on this thread."""
        return getattr(self._local, "body", b"")

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        self._local.body = handler.rfile.read(length) if length else b""
        if length:  # the base class would read Content-Length bytes again: it has been read
            handler.headers.replace_header("Content-Length", "0")
        super()._handle(handler)

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, response: Response) -> None:
        raw = isinstance(response.body, bytes)
        body = response.body if raw else json.dumps(response.body).encode()
        try:
            handler.send_response(response.status)
            handler.send_header(
                "Content-Type", "text/html" if raw else "application/json; charset=utf-8"
            )
            handler.send_header("Content-Length", str(len(body)))
            for key, value in response.headers.items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


@dataclass
class SlackFake:
    server: SlackServer
    bot_token: str = BOT_TOKEN
    channels: dict[str, str] = field(
        default_factory=lambda: {"#ats-alerts": "C0ATSALRT", "C0ATSALRT": "C0ATSALRT"}
    )
    revoked: bool = False  # the webhook's app was removed: 403 invalid_token
    archived: bool = False  # the webhook's channel was archived: 410 channel_is_archived
    messages: list[SlackMessage] = field(default_factory=list)
    _ts: itertools.count = field(default_factory=lambda: itertools.count(1))

    @property
    def webhook_url(self) -> str:
        return self.server.url + WEBHOOK_PATH

    @property
    def api_url(self) -> str:
        return self.server.url + "/api/"

    @property
    def secrets(self) -> tuple[str, ...]:
        """What must never show in a message, an exception or a log line."""
        return (self.webhook_url, WEBHOOK_PATH, "fakeWebhookSecret0123456789", self.bot_token)

    def webhook_attempts(self) -> list[Request]:
        return self.server.requests_to("/services/")

    def fail_next(self, status: int, *, via: str = "webhook", retry_after: float | None = None):
        """Answer the next webhook (or API) request with ``status`` and Slack's body for it."""
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        if via == "webhook":
            body: Any = WEBHOOK_ERRORS.get(status, "error").encode()
            path = "/services/"
        else:
            body = {"ok": False, "error": "ratelimited" if status == 429 else "internal_error"}
            path = API_PATH
        self.server.fail_next(Fault("status", status, headers=headers, path=path, body=body))

    # -- routes --------------------------------------------------------------------------------
    def webhook(self, request: Request) -> Response:
        if request.method != "POST" or request.path != WEBHOOK_PATH:
            return Response(404, b"no_service")
        if self.revoked:
            return Response(403, b"invalid_token")
        if self.archived:
            return Response(410, b"channel_is_archived")
        try:
            payload = json.loads(self.server.body() or b"null")
        except json.JSONDecodeError:
            return Response(400, b"invalid_payload")
        if not isinstance(payload, dict) or not (payload.get("text") or payload.get("blocks")):
            return Response(400, b"invalid_payload")
        if "blocks" in payload and blocks_problem(payload["blocks"]):
            return Response(400, b"invalid_blocks")
        self.messages.append(SlackMessage("webhook", WEBHOOK_CHANNEL, payload))
        return Response(200, b"ok")

    def post_message(self, request: Request) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        auth = headers.get("authorization", "")
        raw = self.server.body()
        if "json" in headers.get("content-type", ""):
            args = json.loads(raw or b"{}")
        else:
            args = dict(parse_qsl(raw.decode()))
            if isinstance(args.get("blocks"), str):
                args["blocks"] = json.loads(args["blocks"])
        token = auth.removeprefix("Bearer ").strip() if auth else args.get("token", "")

        def error(code: str) -> Response:
            return Response(200, {"ok": False, "error": code})

        if not token:
            return error("not_authed")
        if token != self.bot_token:
            return error("invalid_auth")
        channel = self.channels.get(str(args.get("channel", "")))
        if channel is None:
            return error("channel_not_found")
        if not (args.get("text") or args.get("blocks")):
            return error("no_text")
        if args.get("blocks") and blocks_problem(args["blocks"]):
            return error("invalid_blocks")
        ts = f"1700000000.{next(self._ts):06d}"
        self.messages.append(SlackMessage("api", channel, args, token=token))
        message = {"type": "message", "text": args.get("text", ""), "ts": ts, "bot_id": "B0ATS"}
        return Response(200, {"ok": True, "channel": channel, "ts": ts, "message": message})


def install_slack(server: SlackServer) -> SlackFake:
    fake = SlackFake(server)
    server.route("/services/", fake.webhook)
    server.route("/api/chat.postMessage", fake.post_message)
    return fake
