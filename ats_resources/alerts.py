"""Alerts: severities, a log notifier and Slack notifiers, and a manager that de-duplicates
repeats, rate-limits bursts and routes each alert by severity.

Plain Python (no dagster): :mod:`ats_resources.notifier` wraps it as a resource and
:mod:`ats_sensors.alerts` sends run failures through it. Slack is reached with ``slack_sdk``,
by an incoming webhook (the URL is itself the secret) or a bot token and a channel. Neither
secret ever appears in a message, an exception or a log line: everything printed passes
:func:`redact`, and slack_sdk's own logging goes through a redacting logger.
"""

import dataclasses
import enum
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from slack_sdk.http_retry import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from ats_resources.vendors.errors import redact as redact_vendor_secrets

log = logging.getLogger(__name__)


class Severity(enum.IntEnum):
    """How bad an alert is; ordered, so routing can say "error and above"."""

    INFO = 10
    WARNING = 20
    ERROR = 30
    CRITICAL = 40

    @classmethod
    def parse(cls, value: "Severity | str") -> "Severity":
        """A severity from its name (any case), e.g. ``"error"``; raises a ValueError naming the choices."""
        if isinstance(value, Severity):
            return value
        try:
            return cls[str(value).strip().upper()]
        except KeyError:
            choices = ", ".join(s.name.lower() for s in cls)
            raise ValueError(f"unknown alert severity {value!r}; use one of: {choices}") from None

    @property
    def label(self) -> str:
        return self.name.lower()


# Slack shortcodes shown before the severity in a message's header.
EMOJI = {
    Severity.INFO: ":information_source:",
    Severity.WARNING: ":warning:",
    Severity.ERROR: ":x:",
    Severity.CRITICAL: ":rotating_light:",
}
_LOG_LEVELS = {
    Severity.INFO: logging.INFO,
    Severity.WARNING: logging.WARNING,
    Severity.ERROR: logging.ERROR,
    Severity.CRITICAL: logging.CRITICAL,
}


@dataclass(frozen=True)
class Alert:
    """One thing a person should know about.

    ``key`` identifies repeats of the same problem (a run id, ``drift:psi:2024-03-05``); it
    defaults to the title. ``run_url`` links to the run in the Dagster UI.
    """

    severity: Severity
    title: str
    text: str = ""
    key: str | None = None
    run_id: str | None = None
    run_url: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "severity", Severity.parse(self.severity))
        object.__setattr__(self, "fields", {str(k): str(v) for k, v in self.fields.items()})

    @property
    def dedup_key(self) -> str:
        return self.key or self.title


def drift_alert(
    statistic: str,
    value: float,
    threshold: float,
    *,
    partition_key: str,
    severity: Severity = Severity.ERROR,
    action: str = "a retraining run was requested",
    run_id: str | None = None,
    run_url: str | None = None,
) -> Alert:
    """The alert for a drift statistic (e.g. PSI, a unitless score) that crossed its threshold.

    ERROR by default, so with the default routing (error and above to Slack) drift reaches
    Slack; pass ``Severity.WARNING`` to keep it in the log. One alert per statistic and day.
    """
    return Alert(
        severity=severity,
        title=f"Drift: {statistic} {value:.3g} over {threshold:.3g}",
        text=f"{statistic} for {partition_key} is {value:.4g} (threshold {threshold:.4g}); {action}.",
        key=f"drift:{statistic}:{partition_key}",
        run_id=run_id,
        run_url=run_url,
        fields={"Statistic": statistic, "Partition": partition_key, "Value": f"{value:.4g}"},
    )


# -- redaction --------------------------------------------------------------------------------
_SLACK_WEBHOOK = re.compile(
    r"(https?://hooks\.slack(?:-gov)?\.com/(?:services/|workflows/|triggers/)?)[^\s\"'<>|]+"
)
_SLACK_TOKEN = re.compile(r"\bxox[abeoprs]-[A-Za-z0-9-]+")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with Slack webhook URLs and tokens, the vendors' key patterns and each of
    ``secrets`` masked as ``***``."""
    out = _SLACK_WEBHOOK.sub(r"\1***", _SLACK_TOKEN.sub("xox*-***", text))
    return redact_vendor_secrets(out, tuple(s for s in secrets if s))


def _redact_alert(alert: Alert, secrets: Sequence[str]) -> Alert:
    return dataclasses.replace(
        alert,
        title=redact(alert.title, secrets),
        text=redact(alert.text, secrets),
        fields={k: redact(v, secrets) for k, v in alert.fields.items()},
    )


class _RedactingFilter(logging.Filter):
    def __init__(self, secrets: Sequence[str]):
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self.secrets)
        record.args = None
        return True


def _sdk_logger(secrets: Sequence[str]) -> logging.Logger:
    """A logger for one slack_sdk client that masks ``secrets`` in every record.

    slack_sdk logs the request URL (for a webhook, the secret itself) when it retries, and the
    headers (the bot token) at DEBUG. At INFO its DEBUG-only branches stay off; the filter
    catches the rest. The logger is not registered with ``logging`` (one per client would leak),
    but propagates to this module's logger.
    """
    logger = logging.Logger(f"{__name__}.slack_sdk", logging.INFO)
    logger.parent = log
    logger.addFilter(_RedactingFilter(secrets))
    return logger


# -- notifiers --------------------------------------------------------------------------------
class AlertDeliveryError(RuntimeError):
    """An alert that a notifier could not deliver: names the service, the HTTP status and the fix."""

    def __init__(self, service: str, message: str, *, status: int | None = None, hint: str = ""):
        self.service, self.status, self.hint = service, status, hint
        text = f"{service}: {message}" + (f" (HTTP {status})" if status else "")
        super().__init__(redact(text + (f"; {hint}" if hint else "")))


class Notifier(Protocol):
    """Delivers an alert somewhere; raises :class:`AlertDeliveryError` when it cannot."""

    name: str

    def send(self, alert: Alert) -> None: ...


def _format_line(alert: Alert) -> str:
    parts = [f"[{alert.severity.name}] {alert.title}"]
    if alert.text:
        parts.append(alert.text)
    if alert.run_id or alert.run_url:
        parts.append(" ".join(p for p in ("run", alert.run_id, alert.run_url) if p))
    if alert.fields:
        parts.append(", ".join(f"{k}={v}" for k, v in alert.fields.items()))
    return " | ".join(parts)


class LogNotifier:
    """Writes each alert as one line to Python logging at the alert's level (the default)."""

    name = "log"

    def __init__(self, logger: logging.Logger | None = None):
        self.logger = logger or logging.getLogger("ats.alerts")

    def send(self, alert: Alert) -> None:
        self.logger.log(_LOG_LEVELS[alert.severity], "%s", _format_line(alert))


# Slack's Block Kit limits: header text, section text, fields per section and per field.
HEADER_MAX, TEXT_MAX, FIELDS_MAX, FIELD_MAX = 150, 3000, 10, 2000


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mrkdwn(text: str) -> str:
    """Escape the three characters Slack's mrkdwn reserves (``&``, ``<``, ``>``)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(alert: Alert) -> dict[str, Any]:
    """The ``text`` (notification fallback) and ``blocks`` of an alert's Slack message."""
    severity = alert.severity.name
    header = _clip(f"{EMOJI[alert.severity]} {severity}: {alert.title}", HEADER_MAX)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}}
    ]
    if alert.text:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _clip(_mrkdwn(alert.text), TEXT_MAX)},
            }
        )
    items = list(alert.fields.items())
    if len(items) > FIELDS_MAX:
        items = [*items[: FIELDS_MAX - 1], ("More", f"{len(items) - FIELDS_MAX + 1} more fields")]
    if items:
        blocks.append(
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": _clip(f"*{_mrkdwn(k)}*\n{_mrkdwn(v)}", FIELD_MAX)}
                    for k, v in items
                ],
            }
        )
    run = ""
    if alert.run_url:
        run = f"Run <{alert.run_url}|{_mrkdwn(alert.run_id or 'open in Dagster')}>"
    elif alert.run_id:
        run = f"Run {_mrkdwn(alert.run_id)}"
    if run:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": run}]})
    fallback = f"{severity}: {alert.title}" + (f" (run {alert.run_id})" if alert.run_id else "")
    return {"text": _clip(fallback, TEXT_MAX), "blocks": blocks}


class RetryAfterHandler(RateLimitErrorRetryHandler):
    """slack_sdk's 429 handler, waiting exactly what ``Retry-After`` asks, through ``sleep``.

    The built-in one adds up to a second of jitter on ``time.sleep`` and waits however long
    Slack asks; an alert that would hold a sensor tick longer than ``max_wait_s`` fails instead.
    """

    def __init__(
        self, max_retry_count: int, max_wait_s: float, sleep: Callable[[float], None] = time.sleep
    ):
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait_s, self._sleep = max_wait_s, sleep

    @staticmethod
    def wait_s(response: HttpResponse | None) -> float:
        for name, values in (response.headers if response else {}).items():
            if name.lower() == "retry-after" and values:
                try:
                    return max(0.0, float(values[0]))
                except ValueError:
                    break
        return 1.0  # Slack always sends Retry-After with a 429; a second if it did not

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return (
            super()._can_retry(state=state, request=request, response=response, error=error)
            and self.wait_s(response) <= self.max_wait_s
        )

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        state.next_attempt_requested = True
        self._sleep(self.wait_s(response))
        state.increment_current_attempt()


class ConnectionRetryHandler(ConnectionErrorRetryHandler):
    """slack_sdk's handler for a dropped connection: one retry after ``delay_s``, through ``sleep``."""

    def __init__(self, delay_s: float = 1.0, sleep: Callable[[float], None] = time.sleep):
        super().__init__(max_retry_count=1)
        self.delay_s, self._sleep = delay_s, sleep

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        state.next_attempt_requested = True
        self._sleep(self.delay_s)
        state.increment_current_attempt()


def _retry_handlers(
    max_retries: int, max_wait_s: float, sleep: Callable[[float], None]
) -> list[RetryHandler]:
    return [RetryAfterHandler(max_retries, max_wait_s, sleep), ConnectionRetryHandler(1.0, sleep)]


# What a user can do about a failed webhook post, by Slack's error body.
WEBHOOK_HINTS = {
    "invalid_payload": "Slack rejected the message format: report this as an ATS bug",
    "invalid_blocks": "Slack rejected the message blocks: report this as an ATS bug",
    "invalid_token": "the webhook was revoked: create a new incoming webhook and set SLACK_WEBHOOK_URL",
    "action_prohibited": "an admin restricted posting to this channel: pick another channel's webhook",
    "no_service": "the webhook URL is unknown or disabled: check SLACK_WEBHOOK_URL",
    "no_active_hooks": "the webhook is disabled: re-enable the Slack app or set a new SLACK_WEBHOOK_URL",
    "channel_not_found": "the webhook's channel was deleted: create a webhook for another channel",
    "channel_is_archived": "the webhook's channel is archived: unarchive it or create a webhook for another channel",
}
# What a user can do about a failed chat.postMessage, by the Web API's error code.
API_HINTS = {
    "channel_not_found": "the bot cannot see that channel: check SLACK_CHANNEL and invite the bot to it (/invite @your-app)",
    "not_in_channel": "the bot is not in that channel: invite it (/invite @your-app)",
    "is_archived": "the channel is archived: unarchive it or set another SLACK_CHANNEL",
    "invalid_auth": "the token was rejected: check SLACK_BOT_TOKEN (an xoxb- bot token)",
    "not_authed": "no token was sent: set SLACK_BOT_TOKEN",
    "token_revoked": "the token was revoked: reinstall the Slack app and set a new SLACK_BOT_TOKEN",
    "account_inactive": "the token's app or user was deactivated: reinstall the app and set a new SLACK_BOT_TOKEN",
    "missing_scope": "the token lacks the chat:write scope: add it to the Slack app and reinstall",
    "invalid_blocks": "Slack rejected the message blocks: report this as an ATS bug",
}
RATE_LIMIT_HINT = (
    "Slack kept rate-limiting after retries: lower ATS_ALERT_RATE_LIMIT_PER_MINUTE or wait a minute"
)
SERVER_HINT = "Slack is failing: the alert is in the log; check https://slack-status.com"


def _unreachable(service: str, exc: BaseException, secrets: Sequence[str], where: str) -> Exception:
    return AlertDeliveryError(
        service,
        f"could not reach Slack ({type(exc).__name__}: {redact(str(exc), secrets)})",
        hint=f"check network access to {where} and the proxy settings (HTTPS_PROXY)",
    )


class SlackWebhookNotifier:
    """Posts alerts to a Slack incoming webhook (a URL of the form
    ``https://hooks.slack.com/services/T…/B…/…`` that must stay secret)."""

    name = "slack"

    def __init__(
        self,
        url: str,
        timeout: float = 10.0,
        *,
        max_retries: int = 2,
        max_retry_wait_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        from slack_sdk.webhook import WebhookClient

        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                "SLACK_WEBHOOK_URL is not an http(s) URL; paste the incoming webhook URL from "
                "your Slack app's Incoming Webhooks page"
            )
        self.host = parts.netloc
        # The path carries the secret, so mask it even where the full URL is not printed.
        self._secrets = tuple(s for s in (url.strip(), parts.path) if len(s) > 1)
        self._client = WebhookClient(
            url=url.strip(),
            timeout=timeout,  # type: ignore[arg-type]  # urllib accepts float seconds
            retry_handlers=_retry_handlers(max_retries, max_retry_wait_s, sleep),
            logger=_sdk_logger(self._secrets),
        )

    def __repr__(self) -> str:
        return f"SlackWebhookNotifier(host={self.host!r})"

    def send(self, alert: Alert) -> None:
        service = "Slack incoming webhook"
        try:
            response = self._client.send(**slack_message(alert))
        except Exception as exc:  # urllib raises URLError, TimeoutError, OSError...
            raise _unreachable(service, exc, self._secrets, self.host) from None
        body = (response.body or "").strip()
        if response.status_code == 200 and body == "ok":
            return
        status = response.status_code
        raise AlertDeliveryError(
            service,
            f"rejected the alert: {redact(body[:100], self._secrets) or 'no body'}",
            status=status,
            hint=_hint(
                status, body, WEBHOOK_HINTS, "check SLACK_WEBHOOK_URL and the Slack app's settings"
            ),
        )


def _hint(status: int, code: str, hints: Mapping[str, str], default: str) -> str:
    """What to do about a rejected delivery: by HTTP status, then by Slack's error code."""
    if status == 429 or code == "ratelimited":
        return RATE_LIMIT_HINT
    if status >= 500:
        return SERVER_HINT
    return hints.get(code, default)


class SlackBotNotifier:
    """Posts alerts with a bot token (``xoxb-…``, scope ``chat:write``) through ``chat.postMessage``."""

    name = "slack"

    def __init__(
        self,
        token: str,
        channel: str,
        *,
        base_url: str = "https://slack.com/api/",
        timeout: float = 10.0,
        max_retries: int = 2,
        max_retry_wait_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        from slack_sdk import WebClient

        if not token.strip() or not channel.strip():
            raise ValueError("SlackBotNotifier needs SLACK_BOT_TOKEN and SLACK_CHANNEL")
        self.channel = channel.strip()
        self.host = urlsplit(base_url).netloc or base_url
        self._secrets = (token.strip(),)
        self._client = WebClient(
            token=token.strip(),
            base_url=base_url,
            timeout=timeout,  # type: ignore[arg-type]
            retry_handlers=_retry_handlers(max_retries, max_retry_wait_s, sleep),
            logger=_sdk_logger(self._secrets),
        )

    def __repr__(self) -> str:
        return f"SlackBotNotifier(channel={self.channel!r})"

    def send(self, alert: Alert) -> None:
        from slack_sdk.errors import SlackApiError

        service = f"Slack chat.postMessage to {self.channel}"
        try:
            self._client.chat_postMessage(channel=self.channel, **slack_message(alert))
        except SlackApiError as exc:
            status = exc.response.status_code
            data = exc.response.data if isinstance(exc.response.data, dict) else {}
            error = str(data.get("error") or "no error code")
            raise AlertDeliveryError(
                service,
                f"rejected the alert: {redact(error, self._secrets)}",
                status=status,
                hint=_hint(
                    status, error, API_HINTS, "see https://api.slack.com/methods/chat.postMessage"
                ),
            ) from None
        except Exception as exc:
            raise _unreachable(service, exc, self._secrets, self.host) from None


# -- the manager ------------------------------------------------------------------------------
class Outcome(enum.StrEnum):
    """What :meth:`AlertManager.notify` did with an alert."""

    SENT = "sent"
    DUPLICATE = "duplicate"
    RATE_LIMITED = "rate_limited"
    FAILED = "failed"


def routes_by_min_severity(
    base: Sequence[Notifier], escalation: Sequence[Notifier], min_severity: Severity | str
) -> dict[Severity, list[Notifier]]:
    """Every severity to ``base``; ``min_severity`` and above also to ``escalation`` (Slack)."""
    threshold = Severity.parse(min_severity)
    return {s: [*base, *(escalation if s >= threshold else ())] for s in Severity}


class AlertManager:
    """Sends each alert to the notifiers routed for its severity, at most once per key and window.

    * A repeat of a key within ``dedup_window_s`` seconds is a ``duplicate`` (a repeat at a
      higher severity is not); the next alert sent for that key counts the repeats it hid.
    * Over ``rate_limit_per_minute`` alerts sent in the last 60 s, further alerts are
      ``rate_limited`` (written to this module's log, not delivered); ``critical`` always goes out.
    * A notifier that fails is logged and skipped: the next one still gets the alert, nothing is
      raised to the caller, and the outcome is ``failed``; a failed alert may be sent again.
    * A severity without a route goes to the log, so no alert is silently dropped.

    State lives in memory, so de-duplication holds within one process (the code server that
    evaluates sensors keeps it across ticks). ``secrets`` are masked in every alert.
    """

    def __init__(
        self,
        routes: Mapping[Severity, Sequence[Notifier]] | None = None,
        *,
        dedup_window_s: float = 900.0,
        rate_limit_per_minute: int | None = 20,
        clock: Callable[[], float] = time.monotonic,
        secrets: Sequence[str] = (),
    ):
        if dedup_window_s < 0:
            raise ValueError(f"dedup_window_s must be >= 0 seconds, got {dedup_window_s}")
        if rate_limit_per_minute is not None and rate_limit_per_minute < 1:
            raise ValueError(
                f"rate_limit_per_minute must be >= 1 (or None for no limit), got {rate_limit_per_minute}"
            )
        fallback: list[Notifier] = [LogNotifier()]
        given = {Severity.parse(s): list(n) for s, n in (routes or {}).items()}
        self.routes: dict[Severity, list[Notifier]] = {s: given.get(s, fallback) for s in Severity}
        self.dedup_window_s = dedup_window_s
        self.rate_limit_per_minute = rate_limit_per_minute
        self.secrets = tuple(s for s in secrets if s)
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, Severity]] = {}
        self._hidden: dict[str, int] = {}
        self._sent: deque[float] = deque()

    def _admit(self, alert: Alert, now: float) -> tuple[Outcome | None, int]:
        key = alert.dedup_key
        with self._lock:
            last = self._last.get(key)
            if last and now - last[0] < self.dedup_window_s and alert.severity <= last[1]:
                self._hidden[key] = self._hidden.get(key, 0) + 1
                return Outcome.DUPLICATE, 0
            while self._sent and now - self._sent[0] >= 60.0:
                self._sent.popleft()
            limit = self.rate_limit_per_minute
            if (
                limit is not None
                and len(self._sent) >= limit
                and alert.severity < Severity.CRITICAL
            ):
                return Outcome.RATE_LIMITED, 0
            self._sent.append(now)
            self._last[key] = (now, alert.severity)
            return None, self._hidden.pop(key, 0)

    def notify(self, alert: Alert) -> str:
        """Deliver ``alert``; returns an :class:`Outcome` (a str): sent, duplicate, rate_limited or failed."""
        alert = _redact_alert(alert, self.secrets)
        now = self._clock()
        outcome, hidden = self._admit(alert, now)
        if outcome is Outcome.DUPLICATE:
            return outcome
        if outcome is Outcome.RATE_LIMITED:
            log.warning(
                "alert rate-limited (%s sent in the last 60 s), not delivered: %s",
                self.rate_limit_per_minute,
                _format_line(alert),
            )
            return outcome
        if hidden:
            alert = dataclasses.replace(
                alert, fields={**alert.fields, "Repeats suppressed": str(hidden)}
            )
        failed = False
        for notifier in self.routes[alert.severity]:
            try:
                notifier.send(alert)
            except Exception as exc:
                failed = True
                log.error(
                    "alert %r not delivered by %s: %s",
                    alert.title,
                    getattr(notifier, "name", type(notifier).__name__),
                    redact(str(exc), self.secrets),
                )
        if failed:
            with self._lock:  # let a repeat try again, unless a newer send took the key
                if self._last.get(alert.dedup_key, (None,))[0] == now:
                    del self._last[alert.dedup_key]
                    if hidden:
                        self._hidden[alert.dedup_key] = (
                            self._hidden.get(alert.dedup_key, 0) + hidden
                        )
            return Outcome.FAILED
        return Outcome.SENT
