"""Purged, embargoed time splits: training labels never reach into the validation data.

After López de Prado (*Advances in Financial Machine Learning*, ch. 7): validation is a block of
whole trading sessions; a training row is kept only when it was decided before the block starts
and its label (known at ``label_end``, the end of its forward-return horizon) was known at least
``embargo`` before the block's first decision. Times are numpy datetime64 in UTC; sessions are
trading dates; the embargo is a numpy timedelta64.
"""

import contextlib
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

DEFAULT_EMBARGO = np.timedelta64(30, "m")


# eq=False: the fields are arrays, whose == is elementwise and has no single truth value.
@dataclass(frozen=True, eq=False)
class Split:
    """Row indices (sorted, into the arrays given) of one train/validation split.

    ``validation_start`` and ``validation_end`` are the first and last decision times (``ts``) of
    the validation rows; ``purged`` counts rows of the training sessions that were dropped because
    their label ended within ``embargo`` of ``validation_start`` or later (or has no end, NaT).
    """

    train: np.ndarray
    validation: np.ndarray
    validation_start: np.datetime64
    validation_end: np.datetime64
    purged: int


def holdout_split(
    ts: ArrayLike,
    label_end: ArrayLike,
    *,
    validation_fraction: float = 0.25,
    embargo: np.timedelta64 = DEFAULT_EMBARGO,
    session: ArrayLike | None = None,
) -> Split:
    """Validate on the last ``validation_fraction`` of the distinct sessions (at least one whole
    session, rounded to the nearest); train on the earlier rows that survive purging.

    ``ts`` is each row's decision time, ``label_end`` when its label is known; ``session`` its
    trading date (default: the UTC date of ``ts``). Raises ValueError with fewer than 2 sessions
    or when either side would be empty.
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    t, end, day, sessions = _prepare(ts, label_end, session)
    if sessions < 2:
        raise ValueError(f"a holdout split needs at least 2 sessions, got {sessions}")
    validation_sessions = max(1, round(sessions * validation_fraction))
    if validation_sessions >= sessions:
        raise ValueError(
            f"validation_fraction {validation_fraction} of {sessions} sessions leaves no "
            "session to train on"
        )
    first_validation = sessions - validation_sessions
    return _purged_split(t, end, day, 0, first_validation, sessions, _embargo(embargo), "holdout")


def walk_forward_splits(
    ts: ArrayLike,
    label_end: ArrayLike,
    *,
    train_sessions: int,
    validation_sessions: int,
    step_sessions: int | None = None,
    embargo: np.timedelta64 = DEFAULT_EMBARGO,
    session: ArrayLike | None = None,
    max_folds: int | None = None,
) -> list[Split]:
    """Rolling folds over the sorted distinct sessions, oldest first.

    Fold k trains on sessions ``[k * step, k * step + train_sessions)`` and validates on the
    ``validation_sessions`` sessions after them; ``step_sessions`` defaults to
    ``validation_sessions`` (validation blocks tile the data). Each fold is purged like
    ``holdout_split``. With ``max_folds`` only the last (most recent) ``max_folds`` folds are
    returned. Raises ValueError for non-positive counts, when the sessions cannot fill one fold,
    or when purging empties a fold's training rows.
    """
    step = validation_sessions if step_sessions is None else step_sessions
    for name, value in (
        ("train_sessions", train_sessions),
        ("validation_sessions", validation_sessions),
        ("step_sessions", step),
    ):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if max_folds is not None and max_folds < 1:
        raise ValueError(f"max_folds must be at least 1, got {max_folds}")
    t, end, day, sessions = _prepare(ts, label_end, session)
    window = train_sessions + validation_sessions
    if sessions < window:
        raise ValueError(
            f"walk-forward folds of {train_sessions} train + {validation_sessions} validation "
            f"sessions need at least {window} sessions, got {sessions}"
        )
    starts = list(range(0, sessions - window + 1, step))
    if max_folds is not None:
        starts = starts[-max_folds:]
    gap = _embargo(embargo)
    return [
        _purged_split(
            t,
            end,
            day,
            start,
            start + train_sessions,
            start + window,
            gap,
            f"fold starting at session {start}",
        )
        for start in starts
    ]


def _purged_split(
    t: np.ndarray,
    end: np.ndarray,
    day: np.ndarray,
    train_from: int,
    validate_from: int,
    validate_to: int,
    embargo: np.timedelta64,
    name: str,
) -> Split:
    """Train on sessions ``[train_from, validate_from)``, validate on
    ``[validate_from, validate_to)`` (session numbers), purging train rows whose label ends
    within ``embargo`` of the validation start or later."""
    validation = np.flatnonzero((day >= validate_from) & (day < validate_to))
    candidates = (day >= train_from) & (day < validate_from)
    if validation.size == 0 or not candidates.any():
        raise ValueError(f"{name}: no rows on one side of the split")
    validation_start = t[validation].min()
    validation_end = t[validation].max()
    keep = candidates & (t < validation_start) & (end < validation_start - embargo)
    # Rolling forward windows never train after their validation; guard the invariant anyway.
    assert not (keep & (t > validation_end)).any(), "training rows after the validation block"
    train = np.flatnonzero(keep)
    if train.size == 0:
        raise ValueError(
            f"{name}: purging left no training rows (every label ends within the "
            f"{embargo} embargo of {validation_start} or later)"
        )
    return Split(
        train=train,
        validation=validation,
        validation_start=validation_start,
        validation_end=validation_end,
        purged=int(candidates.sum() - train.size),
    )


def _prepare(
    ts: ArrayLike, label_end: ArrayLike, session: ArrayLike | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Decision times, label ends (datetime64[ns]), dense session numbers in date order and the
    number of distinct sessions."""
    t = _as_datetime(ts, "ts")
    end = _as_datetime(label_end, "label_end")
    if t.shape != end.shape:
        raise ValueError(f"ts and label_end differ in length: {t.size} and {end.size}")
    if np.isnat(t).any():
        raise ValueError("ts contains NaT: every row needs a decision time")
    if (end < t).any():
        raise ValueError("label_end precedes ts for some rows: a label ends after its decision")
    days = t.astype("datetime64[D]") if session is None else np.asarray(session).ravel()
    if days.shape != t.shape:
        raise ValueError(f"session must have one value per row, got {days.size} for {t.size}")
    if days.dtype == object:  # datetime.date objects: compare as dates, much faster than objects
        with contextlib.suppress(TypeError, ValueError):
            days = days.astype("datetime64[D]")
    if days.size == 0:
        return t, end, np.empty(0, dtype=np.int64), 0
    distinct, day = np.unique(days, return_inverse=True)
    return t, end, day.astype(np.int64).ravel(), int(distinct.size)


def _as_datetime(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values).ravel()
    # Numbers would cast silently (as nanoseconds since 1970): only times and their text count.
    if array.dtype.kind in "MOUS":
        with contextlib.suppress(TypeError, ValueError):
            return array.astype("datetime64[ns]")
    raise ValueError(f"{name} must be datetimes, got dtype {array.dtype}")


def _embargo(embargo: np.timedelta64) -> np.timedelta64:
    gap = np.timedelta64(embargo).astype("timedelta64[ns]")
    if np.isnat(gap) or gap < np.timedelta64(0, "ns"):
        raise ValueError(f"embargo must be a non-negative duration, got {embargo}")
    return gap
