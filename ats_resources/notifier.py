"""The alert notifier resource: log only by default, Slack (webhook or bot) when configured.

``notifier_resource(env)`` picks the destination from the environment: an incoming webhook when
``SLACK_WEBHOOK_URL`` is set, else a bot when ``SLACK_BOT_TOKEN`` and ``SLACK_CHANNEL`` are set,
else the log. Secrets travel as ``dagster.EnvVar`` so the UI shows the variable's name, never
its value. Routing, de-duplication and the rate limit are :class:`AlertManager`'s.
"""

import os
import threading
from collections.abc import Mapping

import dagster as dg
from pydantic import Field

from ats_resources.alerts import (
    Alert,
    AlertManager,
    LogNotifier,
    Notifier,
    Severity,
    SlackBotNotifier,
    SlackWebhookNotifier,
    routes_by_min_severity,
)
from ats_resources.settings import ConfigError, _choice, _float, _int

SEVERITY_NAMES = tuple(s.label for s in Severity)
# Values of these variables are masked in every alert, wherever they turn up (an error message
# that quotes a DSN, say).
_SECRET_SUFFIXES = ("_KEY", "_SECRET", "_TOKEN", "_PASSWORD", "_WEBHOOK_URL")

# One manager per configuration and process: the sensor code server keeps de-duplication and
# the rate limit across ticks, where a manager per resource instance would forget them.
_MANAGERS: dict[tuple, AlertManager] = {}
_MANAGERS_LOCK = threading.Lock()


def _env_secrets() -> tuple[str, ...]:
    return tuple(
        value
        for name, value in os.environ.items()
        if name.upper().endswith(_SECRET_SUFFIXES) and len(value.strip()) >= 8
    )


class NotifierResource(dg.ConfigurableResource):
    """Sends alerts: always to the log; ``min_slack_severity`` and above also to Slack."""

    slack_webhook_url: str | None = Field(
        default=None,
        description="Slack incoming webhook URL (a secret): pass dg.EnvVar('SLACK_WEBHOOK_URL').",
    )
    slack_bot_token: str | None = Field(
        default=None,
        description="Slack bot token (xoxb-..., scope chat:write): pass dg.EnvVar('SLACK_BOT_TOKEN').",
    )
    slack_channel: str | None = Field(
        default=None, description="Channel for the bot token, e.g. #ats-alerts or C0123456789."
    )
    slack_api_url: str = Field(
        default="https://slack.com/api/", description="Slack Web API base URL (bot token only)."
    )
    min_slack_severity: str = Field(
        default="error",
        description="Lowest severity sent to Slack: info, warning, error, critical.",
    )
    dedup_window_s: float = Field(
        default=900.0, ge=0, description="Seconds in which a repeat of an alert key is dropped."
    )
    rate_limit_per_minute: int = Field(
        default=20, ge=1, description="Alerts sent per rolling minute; critical ones always go."
    )
    run_url_base: str = Field(
        default="http://127.0.0.1:3000",
        description="The Dagster UI's address; alerts link to {run_url_base}/runs/{run_id}.",
    )
    timeout_s: float = Field(default=10.0, gt=0, description="Seconds per Slack request.")
    max_retries: int = Field(
        default=2, ge=0, le=5, description="Retries of a rate-limited (429) Slack post."
    )

    @property
    def destination(self) -> str:
        """Where alerts go, without secrets: ``log``, ``log + Slack webhook`` or ``log + Slack bot #c``."""
        if self.slack_webhook_url:
            return "log + Slack webhook"
        if self.slack_bot_token and self.slack_channel:
            return f"log + Slack bot {self.slack_channel}"
        return "log"

    def run_url(self, run_id: str) -> str:
        return f"{self.run_url_base.rstrip('/')}/runs/{run_id}"

    def _slack(self) -> list[Notifier]:
        if self.slack_webhook_url:
            return [
                SlackWebhookNotifier(
                    self.slack_webhook_url, self.timeout_s, max_retries=self.max_retries
                )
            ]
        if self.slack_bot_token and self.slack_channel:
            return [
                SlackBotNotifier(
                    self.slack_bot_token,
                    self.slack_channel,
                    base_url=self.slack_api_url,
                    timeout=self.timeout_s,
                    max_retries=self.max_retries,
                )
            ]
        return []

    def manager(self) -> AlertManager:
        """The process's :class:`AlertManager` for this configuration."""
        key = (
            self.slack_webhook_url,
            self.slack_bot_token,
            self.slack_channel,
            self.slack_api_url,
            Severity.parse(self.min_slack_severity),
            self.dedup_window_s,
            self.rate_limit_per_minute,
            self.timeout_s,
            self.max_retries,
        )
        with _MANAGERS_LOCK:
            if key not in _MANAGERS:
                secrets = [s for s in (self.slack_webhook_url, self.slack_bot_token) if s]
                _MANAGERS[key] = AlertManager(
                    routes_by_min_severity([LogNotifier()], self._slack(), self.min_slack_severity),
                    dedup_window_s=self.dedup_window_s,
                    rate_limit_per_minute=self.rate_limit_per_minute,
                    secrets=[*secrets, *_env_secrets()],
                )
            return _MANAGERS[key]

    def notify(
        self,
        severity: Severity | str,
        title: str,
        text: str = "",
        *,
        key: str | None = None,
        run_id: str | None = None,
        fields: Mapping[str, object] | None = None,
    ) -> str:
        """Send one alert (linked to ``run_id``'s page when given); returns the manager's outcome."""
        return self.manager().notify(
            Alert(
                severity=Severity.parse(severity),
                title=title,
                text=text,
                key=key,
                run_id=run_id,
                run_url=self.run_url(run_id) if run_id else None,
                fields={k: str(v) for k, v in (fields or {}).items()},
            )
        )


def _secret(env: Mapping[str, str], name: str) -> str:
    """``dg.EnvVar(name)`` when the process environment holds the same value (so it resolves at
    run time and the UI shows only the name); the plain value for a mapping the process lacks."""
    value = env.get(name, "").strip()
    return dg.EnvVar(name) if os.environ.get(name, "").strip() == value else value


def notifier_resource(settings_env: Mapping[str, str]) -> NotifierResource:
    """The notifier the environment asks for: webhook, else bot + channel, else log only.

    Reads SLACK_WEBHOOK_URL, SLACK_BOT_TOKEN, SLACK_CHANNEL, ATS_ALERT_MIN_SLACK_SEVERITY
    (default error), ATS_ALERT_DEDUP_WINDOW_S (900 seconds), ATS_ALERT_RATE_LIMIT_PER_MINUTE (20)
    and ATS_DAGSTER_URL (http://127.0.0.1:3000, the UI that alerts link to). Raises
    :class:`ConfigError` for a bot token without a channel or a malformed value.
    """
    env = settings_env
    common = dict(
        min_slack_severity=_choice(env, "ATS_ALERT_MIN_SLACK_SEVERITY", "error", SEVERITY_NAMES),
        dedup_window_s=_float(env, "ATS_ALERT_DEDUP_WINDOW_S", 900.0, 0.0),
        rate_limit_per_minute=_int(env, "ATS_ALERT_RATE_LIMIT_PER_MINUTE", 20, 1),
        run_url_base=env.get("ATS_DAGSTER_URL", "").strip() or "http://127.0.0.1:3000",
    )
    webhook = env.get("SLACK_WEBHOOK_URL", "").strip()
    token = env.get("SLACK_BOT_TOKEN", "").strip()
    channel = env.get("SLACK_CHANNEL", "").strip()
    if webhook:
        if not webhook.startswith(("https://", "http://")):
            raise ConfigError(
                "SLACK_WEBHOOK_URL is not a URL; paste the https://hooks.slack.com/services/... "
                "address from your Slack app's Incoming Webhooks page"
            )
        return NotifierResource(slack_webhook_url=_secret(env, "SLACK_WEBHOOK_URL"), **common)
    if token:
        if not channel:
            raise ConfigError(
                "SLACK_BOT_TOKEN is set but SLACK_CHANNEL is not; set SLACK_CHANNEL=#your-channel "
                "(and invite the bot to it), or use SLACK_WEBHOOK_URL instead"
            )
        return NotifierResource(
            slack_bot_token=_secret(env, "SLACK_BOT_TOKEN"), slack_channel=channel, **common
        )
    return NotifierResource(**common)
