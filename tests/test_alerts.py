"""Alerts: the manager's de-duplication, rate limit and routing; Slack delivery against a fake
Slack on 127.0.0.1 (never the real one); the run-failure sensor end to end."""

from __future__ import annotations

import logging

import dagster as dg
import pytest

from ats_resources.alerts import (
    Alert,
    AlertDeliveryError,
    AlertManager,
    LogNotifier,
    Severity,
    SlackBotNotifier,
    SlackWebhookNotifier,
    drift_alert,
    redact,
    routes_by_min_severity,
    slack_message,
)
from ats_resources.notifier import NotifierResource, notifier_resource
from ats_resources.settings import ConfigError
from ats_sensors.alerts import first_error_line, run_failure_alert_sensor
from tests.fakes.slack import BOT_TOKEN, SlackFake, SlackServer, install_slack
from tests.fakes.vendor_server import Fault


class Clock:
    """A monotonic clock the test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A notifier that keeps what it was sent, or fails every time."""

    def __init__(self, name: str = "recorder", fail: bool = False) -> None:
        self.name, self.fail, self.alerts = name, fail, []

    def send(self, alert: Alert) -> None:
        if self.fail:
            raise AlertDeliveryError("Fake service", "is down", status=503)
        self.alerts.append(alert)


def alert(severity: Severity = Severity.ERROR, key: str = "k", **kw) -> Alert:
    return Alert(severity=severity, title=kw.pop("title", f"title {key}"), key=key, **kw)


def manager(*notifiers: Recorder, clock: Clock | None = None, **kw) -> AlertManager:
    routes = {s: list(notifiers) for s in Severity}
    return AlertManager(routes, clock=clock or Clock(), **kw)


# -- the manager --------------------------------------------------------------------------------
def test_severities_are_ordered_info_warning_error_critical():
    assert Severity.INFO < Severity.WARNING < Severity.ERROR < Severity.CRITICAL
    assert Severity.parse("Error") is Severity.ERROR
    with pytest.raises(ValueError, match="info, warning, error, critical"):
        Severity.parse("fatal")


def test_a_repeat_of_the_same_key_within_the_window_is_a_duplicate():
    clock, sink = Clock(), Recorder()
    alerts = manager(sink, clock=clock, dedup_window_s=600)
    assert alerts.notify(alert(key="run-1")) == "sent"
    clock.now += 599
    assert alerts.notify(alert(key="run-1")) == "duplicate"
    assert alerts.notify(alert(key="run-2")) == "sent"
    assert [a.key for a in sink.alerts] == ["run-1", "run-2"]


def test_the_same_key_after_the_window_is_sent_again_and_counts_the_hidden_repeats():
    clock, sink = Clock(), Recorder()
    alerts = manager(sink, clock=clock, dedup_window_s=600)
    alerts.notify(alert(key="drift"))
    alerts.notify(alert(key="drift"))
    alerts.notify(alert(key="drift"))
    clock.now += 600
    assert alerts.notify(alert(key="drift")) == "sent"
    assert sink.alerts[-1].fields["Repeats suppressed"] == "2"


def test_a_repeat_at_a_higher_severity_is_not_a_duplicate():
    alerts = manager(Recorder())
    assert alerts.notify(alert(Severity.WARNING, key="drift")) == "sent"
    assert alerts.notify(alert(Severity.CRITICAL, key="drift")) == "sent"
    assert alerts.notify(alert(Severity.ERROR, key="drift")) == "duplicate"


def test_alerts_over_the_rate_limit_within_a_minute_are_held_back_until_it_passes():
    clock, sink = Clock(), Recorder()
    alerts = manager(sink, clock=clock, rate_limit_per_minute=3, dedup_window_s=0)
    outcomes = []
    for i in range(5):
        outcomes.append(alerts.notify(alert(key=f"k{i}")))
        clock.now += 1
    assert outcomes == ["sent", "sent", "sent", "rate_limited", "rate_limited"]
    clock.now = 1_000.0 + 60  # the first send leaves the rolling minute
    assert alerts.notify(alert(key="k5")) == "sent"
    assert alerts.notify(alert(key="k6")) == "rate_limited"
    assert len(sink.alerts) == 4


def test_critical_alerts_bypass_the_rate_limit():
    sink = Recorder()
    alerts = manager(sink, rate_limit_per_minute=1)
    assert alerts.notify(alert(Severity.ERROR, key="a")) == "sent"
    assert alerts.notify(alert(Severity.ERROR, key="b")) == "rate_limited"
    assert alerts.notify(alert(Severity.CRITICAL, key="c")) == "sent"
    assert alerts.notify(alert(Severity.CRITICAL, key="d")) == "sent"
    assert [a.key for a in sink.alerts] == ["a", "c", "d"]


def test_a_rate_limited_alert_is_still_written_to_the_log(caplog):
    alerts = manager(Recorder(), rate_limit_per_minute=1)
    alerts.notify(alert(key="a"))
    with caplog.at_level(logging.WARNING, logger="ats_resources.alerts"):
        assert alerts.notify(alert(key="b", title="Drift on AAPL")) == "rate_limited"
    assert "rate-limited" in caplog.text and "Drift on AAPL" in caplog.text


def test_info_and_warning_go_to_the_log_only_error_and_critical_also_to_slack():
    log, slack = Recorder("log"), Recorder("slack")
    alerts = AlertManager(routes_by_min_severity([log], [slack], "error"), clock=Clock())
    for severity in Severity:
        alerts.notify(alert(severity, key=severity.label))
    assert [a.key for a in log.alerts] == ["info", "warning", "error", "critical"]
    assert [a.key for a in slack.alerts] == ["error", "critical"]


def test_a_severity_without_a_route_goes_to_the_log(caplog):
    alerts = AlertManager({Severity.ERROR: [Recorder()]}, clock=Clock())
    with caplog.at_level(logging.INFO, logger="ats.alerts"):
        assert alerts.notify(alert(Severity.INFO, title="Retraining started")) == "sent"
    assert "[INFO] Retraining started" in caplog.text


def test_a_failing_notifier_is_logged_not_raised_and_the_next_one_still_gets_the_alert(caplog):
    broken, after = Recorder("slack", fail=True), Recorder("log")
    alerts = manager(broken, after)
    with caplog.at_level(logging.ERROR, logger="ats_resources.alerts"):
        assert alerts.notify(alert(key="run-1", title="Run failed")) == "failed"
    assert [a.key for a in after.alerts] == ["run-1"]
    assert "not delivered by slack" in caplog.text and "Fake service" in caplog.text


def test_a_failed_alert_is_not_a_duplicate_when_it_is_sent_again():
    broken = Recorder("slack", fail=True)
    alerts = manager(broken)
    assert alerts.notify(alert(key="run-1")) == "failed"
    broken.fail = False
    assert alerts.notify(alert(key="run-1")) == "sent"


def test_the_manager_masks_its_secrets_in_every_alert():
    sink = Recorder()
    alerts = manager(sink, secrets=["hunter2-password"])
    alerts.notify(
        alert(
            text="connect to postgresql://ats:hunter2-password@db failed",
            fields={"Hook": "https://hooks.slack.com/services/T1/B2/abc"},
        )
    )
    sent = sink.alerts[0]
    assert "hunter2-password" not in sent.text and "***" in sent.text
    assert sent.fields["Hook"] == "https://hooks.slack.com/services/***"


def test_redact_masks_webhook_urls_bot_tokens_and_given_secrets():
    text = (
        "post to https://hooks.slack.com/services/T0/B0/XyZ failed; token xoxb-123-456-abc; "
        "apiKey=s3cr3t; my-own-secret"
    )
    out = redact(text, ["my-own-secret"])
    for secret in ("T0/B0/XyZ", "xoxb-123-456-abc", "s3cr3t", "my-own-secret"):
        assert secret not in out


def test_the_log_notifier_writes_one_line_at_the_alerts_level(caplog):
    with caplog.at_level(logging.INFO, logger="ats.alerts"):
        LogNotifier().send(
            alert(
                Severity.CRITICAL, title="Broker down", run_id="abc", run_url="http://ui/runs/abc"
            )
        )
    [record] = caplog.records
    assert record.levelno == logging.CRITICAL
    assert (
        "[CRITICAL] Broker down" in record.getMessage()
        and "http://ui/runs/abc" in record.getMessage()
    )


def test_a_drift_alert_reaches_slack_at_the_default_routing_once_per_statistic_and_day():
    drift = drift_alert("psi", 0.31, 0.2, partition_key="2024-03-05")
    assert drift.severity >= Severity.ERROR
    assert drift.key == "drift:psi:2024-03-05"


def test_a_long_alert_stays_within_slacks_block_limits():
    message = slack_message(
        alert(title="T" * 400, text="x" * 5000, fields={f"f{i}": "v" * 3000 for i in range(15)})
    )
    header, text, fields = message["blocks"][:3]
    assert len(header["text"]["text"]) <= 150
    assert len(text["text"]["text"]) <= 3000
    assert len(fields["fields"]) == 10
    assert all(len(f["text"]) <= 2000 for f in fields["fields"])


# -- Slack, against the fake --------------------------------------------------------------------
@pytest.fixture
def slack():
    with SlackServer() as server:
        yield install_slack(server)


def assert_no_secret(text: str, fake: SlackFake) -> None:
    for secret in fake.secrets:
        assert secret not in text


@pytest.mark.integration
def test_the_webhook_posts_a_header_with_severity_and_title_the_text_fields_and_run_link(slack):
    SlackWebhookNotifier(slack.webhook_url, timeout=2).send(
        alert(
            Severity.ERROR,
            title="Run failed: daily_pipeline_job",
            text="Step `raw_bars` failed: boom",
            run_id="0b1c2d3e-run",
            run_url="http://127.0.0.1:3000/runs/0b1c2d3e-run",
            fields={"Job": "daily_pipeline_job"},
        )
    )
    [message] = slack.messages
    blocks = message.payload["blocks"]
    assert blocks[0] == {
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": ":x: ERROR: Run failed: daily_pipeline_job",
            "emoji": True,
        },
    }
    assert "<http://127.0.0.1:3000/runs/0b1c2d3e-run|0b1c2d3e-run>" in message.text
    assert "*Job*\ndaily_pipeline_job" in message.text
    assert message.payload["text"].startswith("ERROR: Run failed")  # the notification fallback


@pytest.mark.integration
@pytest.mark.parametrize(
    ("status", "fix"),
    [
        (400, "ATS bug"),
        (403, "create a new incoming webhook"),
        (404, "check SLACK_WEBHOOK_URL"),
        (410, "archived"),
        (500, "Slack is failing"),
    ],
)
def test_a_rejected_webhook_post_names_slack_the_status_and_the_fix_never_the_url(
    slack, status, fix
):
    slack.fail_next(status)
    with pytest.raises(AlertDeliveryError) as caught:
        SlackWebhookNotifier(slack.webhook_url, timeout=2).send(alert())
    message = str(caught.value)
    assert "Slack" in message and f"HTTP {status}" in message and fix in message
    assert caught.value.status == status
    assert_no_secret(message + repr(caught.value), slack)
    assert slack.messages == []


@pytest.mark.integration
def test_an_archived_channel_is_reported_from_slacks_own_answer(slack):
    slack.archived = True
    with pytest.raises(AlertDeliveryError, match=r"channel_is_archived \(HTTP 410\); .*unarchive"):
        SlackWebhookNotifier(slack.webhook_url, timeout=2).send(alert())


@pytest.mark.integration
def test_one_429_then_200_delivers_once_after_waiting_what_retry_after_asks(slack):
    slept: list[float] = []
    slack.fail_next(429, retry_after=3)
    SlackWebhookNotifier(slack.webhook_url, timeout=2, sleep=slept.append).send(alert())
    assert len(slack.messages) == 1
    assert len(slack.webhook_attempts()) == 2
    assert slept == [3.0]


@pytest.mark.integration
def test_429s_past_the_retries_fail_with_the_rate_limit_hint(slack):
    slept: list[float] = []
    for _ in range(3):
        slack.fail_next(429, retry_after=1)
    notifier = SlackWebhookNotifier(slack.webhook_url, timeout=2, max_retries=2, sleep=slept.append)
    with pytest.raises(AlertDeliveryError, match=r"HTTP 429.*rate-limiting"):
        notifier.send(alert())
    assert len(slack.webhook_attempts()) == 3 and slept == [1.0, 1.0]


@pytest.mark.integration
def test_a_retry_after_longer_than_the_cap_is_not_waited_for(slack):
    slept: list[float] = []
    slack.fail_next(429, retry_after=600)
    notifier = SlackWebhookNotifier(
        slack.webhook_url, timeout=2, max_retry_wait_s=30, sleep=slept.append
    )
    with pytest.raises(AlertDeliveryError, match="HTTP 429"):
        notifier.send(alert())
    assert slept == [] and len(slack.webhook_attempts()) == 1


@pytest.mark.integration
def test_an_unreachable_webhook_is_an_error_without_the_url_in_it_or_in_the_logs(caplog):
    with SlackServer() as server:
        fake = install_slack(server)
    # The server is gone: the connection is refused, retried once, then reported.
    slept: list[float] = []
    notifier = SlackWebhookNotifier(fake.webhook_url, timeout=2, sleep=slept.append)
    with caplog.at_level(logging.DEBUG), pytest.raises(AlertDeliveryError) as caught:
        notifier.send(alert())
    assert "could not reach Slack" in str(caught.value) and slept == [1.0]
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert any("Going to retry" in r.getMessage() for r in caplog.records)  # slack_sdk's line
    assert_no_secret(caplog.text + str(caught.value) + repr(notifier), fake)


@pytest.mark.integration
def test_a_webhook_slower_than_the_timeout_fails_without_the_url(slack):
    slack.server.fail_next(Fault("slow", delay_s=1.5, path="/services/"))
    with pytest.raises(AlertDeliveryError, match="could not reach Slack") as caught:
        SlackWebhookNotifier(slack.webhook_url, timeout=0.3, sleep=lambda s: None).send(alert())
    assert_no_secret(str(caught.value), slack)


@pytest.mark.integration
def test_the_bot_posts_to_its_channel_with_the_token_as_a_bearer_header(slack):
    bot = SlackBotNotifier(BOT_TOKEN, "#ats-alerts", base_url=slack.api_url, timeout=2)
    bot.send(alert(title="Model promoted", run_id="r1", run_url="http://ui/runs/r1"))
    [message] = slack.messages
    assert (message.via, message.channel, message.token) == ("api", "C0ATSALRT", BOT_TOKEN)
    assert "Model promoted" in message.text and "<http://ui/runs/r1|r1>" in message.text
    assert BOT_TOKEN not in repr(bot)


@pytest.mark.integration
def test_an_unknown_channel_names_the_channel_and_the_fix_never_the_token(slack):
    bot = SlackBotNotifier(BOT_TOKEN, "#nowhere", base_url=slack.api_url, timeout=2)
    with pytest.raises(AlertDeliveryError) as caught:
        bot.send(alert())
    message = str(caught.value)
    assert "#nowhere" in message and "channel_not_found" in message and "invite the bot" in message
    assert_no_secret(message, slack)


@pytest.mark.integration
def test_a_wrong_bot_token_is_reported_without_the_token(slack):
    wrong = "xoxb-1111-2222-notTheRightTokenAtAll"
    bot = SlackBotNotifier(wrong, "#ats-alerts", base_url=slack.api_url, timeout=2)
    with pytest.raises(AlertDeliveryError, match=r"invalid_auth.*SLACK_BOT_TOKEN") as caught:
        bot.send(alert())
    assert wrong not in str(caught.value)


@pytest.mark.integration
def test_a_rate_limited_bot_post_is_retried_after_retry_after(slack):
    slept: list[float] = []
    slack.fail_next(429, via="api", retry_after=2)
    SlackBotNotifier(
        BOT_TOKEN, "#ats-alerts", base_url=slack.api_url, timeout=2, sleep=slept.append
    ).send(alert())
    assert len(slack.messages) == 1 and slept == [2.0]


@pytest.mark.integration
def test_with_slack_down_the_alert_is_still_logged_and_the_outcome_is_failed(slack, caplog):
    slack.revoked = True
    slack_notifier = SlackWebhookNotifier(slack.webhook_url, timeout=2)
    alerts = AlertManager(routes_by_min_severity([LogNotifier()], [slack_notifier], "error"))
    with caplog.at_level(logging.INFO):
        assert alerts.notify(alert(title="Broker rejected orders")) == "failed"
    assert "[ERROR] Broker rejected orders" in caplog.text
    assert "invalid_token (HTTP 403)" in caplog.text
    assert_no_secret(caplog.text, slack)


# -- the resource -------------------------------------------------------------------------------
def test_the_environment_picks_webhook_then_bot_then_log_only(monkeypatch):
    for name in ("SLACK_WEBHOOK_URL", "SLACK_BOT_TOKEN", "SLACK_CHANNEL"):
        monkeypatch.delenv(name, raising=False)
    both = {
        "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/x",
        "SLACK_BOT_TOKEN": "xoxb-1",
    }
    assert notifier_resource({**both, "SLACK_CHANNEL": "#a"}).destination == "log + Slack webhook"
    bot = notifier_resource({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_CHANNEL": "#a"})
    assert bot.destination == "log + Slack bot #a"
    assert notifier_resource({}).destination == "log"
    with pytest.raises(ConfigError, match="SLACK_CHANNEL is not"):
        notifier_resource({"SLACK_BOT_TOKEN": "xoxb-1"})
    with pytest.raises(ConfigError, match="ATS_ALERT_MIN_SLACK_SEVERITY"):
        notifier_resource({"ATS_ALERT_MIN_SLACK_SEVERITY": "loud"})


def test_a_webhook_from_the_process_environment_travels_as_an_envvar(monkeypatch):
    url = "https://hooks.slack.com/services/T0/B0/processSecret"
    monkeypatch.setenv("SLACK_WEBHOOK_URL", url)
    resource = notifier_resource({"SLACK_WEBHOOK_URL": url})
    assert isinstance(resource.slack_webhook_url, dg.EnvVar)
    assert resource.slack_webhook_url.env_var_name == "SLACK_WEBHOOK_URL"
    assert "processSecret" not in repr(resource)
    with dg.build_resources({"notifier": resource}) as built:  # resolved only at run time
        assert built.notifier.slack_webhook_url == url


@pytest.mark.integration
def test_the_resource_sends_errors_to_slack_with_a_link_to_the_run(slack):
    notifier = NotifierResource(
        slack_webhook_url=slack.webhook_url, run_url_base="http://dagster.local:3000/"
    )
    outcome = notifier.notify(
        "error", "Backfill failed", "3 partitions failed", key="bf-1", run_id="run-42"
    )
    assert outcome == "sent"
    assert "<http://dagster.local:3000/runs/run-42|run-42>" in slack.messages[0].text
    assert notifier.notify("warning", "Slow vendor", key="slow-1") == "sent"
    assert len(slack.messages) == 1  # warnings stay in the log


# -- the run-failure sensor ---------------------------------------------------------------------
@dg.op
def raw_bars_op():
    raise RuntimeError(
        "Polygon /v2/aggs rejected the request (HTTP 403)\nstack detail that stays out"
    )


@dg.job
def failing_job():
    raw_bars_op()


@pytest.mark.integration
def test_a_failed_run_sends_one_slack_alert_with_the_run_step_and_error(slack):
    notifier = NotifierResource(
        slack_webhook_url=slack.webhook_url, run_url_base="http://127.0.0.1:3000"
    )
    with dg.DagsterInstance.ephemeral() as instance:
        result = failing_job.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        run_id = result.run_id
        for _ in range(2):  # a second evaluation of the same failure is a duplicate
            context = dg.build_run_status_sensor_context(
                sensor_name="run_failure_alert_sensor",
                dagster_instance=instance,
                dagster_run=result.dagster_run,
                dagster_event=result.get_run_failure_event(),
                resources={"notifier": notifier},
            )
            run_failure_alert_sensor(context)
    [message] = slack.messages
    text = message.text
    assert "ERROR: Run failed: failing_job" in text
    assert f"<http://127.0.0.1:3000/runs/{run_id}|{run_id}>" in text
    assert "raw_bars_op" in text
    assert "RuntimeError: Polygon /v2/aggs rejected the request (HTTP 403)" in text
    assert "stack detail" not in text
    assert_no_secret(str(message.payload), slack)


def test_the_run_failure_sensor_watches_every_job_and_starts_running():
    assert run_failure_alert_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert "notifier" in run_failure_alert_sensor.required_resource_keys


def test_a_run_that_failed_outside_its_steps_is_described_by_the_failure_message():
    assert first_error_line(None, "Run worker exited unexpectedly\ntrace") == (
        "Run worker exited unexpectedly"
    )
    assert first_error_line(None) == "no error message"
