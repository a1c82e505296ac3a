"""Run-failure alerts: every failed run of this code location becomes one error alert.

The alert names the job, the run (linked to its page in the UI), the failing step and the first
line of its error, and goes through the ``notifier`` resource (log by default, Slack when
configured). The sensor starts RUNNING: it launches no runs, so it is safe on from the start, and
a failure nobody hears about is the case it exists for. It needs the Dagster daemon, like every
sensor; ``live`` is its own code location and needs its own copy.
"""

import dagster as dg

from ats_resources.alerts import Severity
from ats_resources.notifier import NotifierResource

ERROR_MAX = 300  # characters of the error's first line kept in an alert
# Dagster's wrappers around the user's exception: the cause is what a person needs to read.
_WRAPPERS = ("DagsterExecutionStepExecutionError", "DagsterUserCodeExecutionError")


def first_error_line(error: object | None, fallback: str = "") -> str:
    """The first line of the user's error in a ``SerializableErrorInfo`` (unwrapping Dagster's
    step wrapper), or ``fallback`` when there is none."""
    while error is not None and getattr(error, "cls_name", None) in _WRAPPERS:
        if getattr(error, "cause", None) is None:
            break
        error = error.cause
    message = (getattr(error, "message", None) or fallback or "").strip()
    line = message.splitlines()[0] if message else "no error message"
    return line if len(line) <= ERROR_MAX else line[: ERROR_MAX - 1] + "…"


@dg.run_failure_sensor(
    name="run_failure_alert_sensor",
    description="Sends an error alert (log, and Slack when configured) for every failed run.",
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)
def run_failure_alert_sensor(
    context: dg.RunFailureSensorContext, notifier: NotifierResource
) -> None:
    run = context.dagster_run
    steps = context.get_step_failure_events()
    if steps:
        step = steps[0].step_key or "unknown step"
        error = first_error_line(steps[0].event_specific_data.error)  # type: ignore[union-attr]
    else:  # the run failed outside any step (launch, resources, a killed worker)
        step = "none (the run failed outside its steps)"
        failure = context.failure_event
        data = failure.event_specific_data
        error = first_error_line(getattr(data, "error", None), failure.message or "")
    fields = {"Job": run.job_name, "Step": step}
    if len(steps) > 1:
        fields["Failed steps"] = str(len(steps))
    if partition := run.tags.get("dagster/partition"):
        fields["Partition"] = partition
    outcome = notifier.notify(
        Severity.ERROR,
        f"Run failed: {run.job_name}",
        f"Step `{step}` failed: {error}",
        key=run.run_id,
        run_id=run.run_id,
        fields=fields,
    )
    context.log.info(f"run {run.run_id} failure alert: {outcome} ({notifier.destination})")
