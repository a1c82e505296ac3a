"""Purged, embargoed time splits: no training label reaches into its validation block."""

import itertools

import numpy as np
import pytest

from ats_assets.models.splits import Split, holdout_split, walk_forward_splits

EMBARGO = np.timedelta64(30, "m")


def rows(sessions: int = 12, times: int = 30, tickers: int = 3, horizon_minutes: int = 30, seed=0):
    """Decision times every 10 minutes from 14:30 UTC on consecutive days, shuffled; labels end
    ``horizon_minutes`` later, or, with ``seed`` set, a random 1 minute to 2 days later."""
    rng = np.random.default_rng(seed)
    day = np.arange(sessions).repeat(times * tickers)
    minute = np.tile(np.arange(times).repeat(tickers), sessions) * 10
    ts = (
        np.datetime64("2024-11-04T14:30", "ns")
        + day * np.timedelta64(1, "D")
        + minute * np.timedelta64(1, "m")
    )
    horizon = (
        np.full(ts.size, horizon_minutes) if seed == 0 else rng.integers(1, 2 * 24 * 60, ts.size)
    )
    label_end = ts + horizon * np.timedelta64(1, "m")
    order = rng.permutation(ts.size)  # splits must not depend on row order
    return ts[order], label_end[order]


def assert_purged(split: Split, ts: np.ndarray, label_end: np.ndarray, embargo=EMBARGO):
    assert (ts[split.train] < split.validation_start).all()
    assert (label_end[split.train] < split.validation_start - embargo).all()
    assert np.intersect1d(split.train, split.validation).size == 0


def assert_whole_sessions(split: Split, ts: np.ndarray):
    day = ts.astype("datetime64[D]")
    validation_days = np.unique(day[split.validation])
    assert np.array_equal(np.flatnonzero(np.isin(day, validation_days)), split.validation)


def test_holdout_validates_on_the_last_quarter_of_sessions_whole():
    ts, label_end = rows(sessions=12)
    split = holdout_split(ts, label_end)
    day = ts.astype("datetime64[D]")
    assert np.unique(day[split.validation]).size == 3
    assert day[split.validation].min() == np.unique(day)[9]
    assert_whole_sessions(split, ts)
    assert split.validation_start == ts[split.validation].min()
    assert split.validation_end == ts[split.validation].max()


def test_holdout_indices_are_sorted_integers():
    ts, label_end = rows()
    split = holdout_split(ts, label_end)
    for indices in (split.train, split.validation):
        assert np.issubdtype(indices.dtype, np.integer)
        assert (np.diff(indices) > 0).all()


def test_same_session_labels_are_kept_when_they_end_before_the_next_session():
    # 30-minute labels inside each session end overnight-far from the next session's start.
    ts, label_end = rows(sessions=8)
    split = holdout_split(ts, label_end)
    day = ts.astype("datetime64[D]")
    assert split.purged == 0
    assert split.train.size == np.isin(day, np.unique(day)[:6]).sum()


def test_labels_reaching_into_the_embargo_are_purged_and_counted():
    ts, label_end = rows(sessions=8)
    last_train_day = np.unique(ts.astype("datetime64[D]"))[5]
    overnight = ts.astype("datetime64[D]") == last_train_day
    label_end = np.where(overnight, label_end + np.timedelta64(1, "D"), label_end)
    split = holdout_split(ts, label_end)
    assert split.purged == overnight.sum()
    assert not np.isin(np.flatnonzero(overnight), split.train).any()
    assert_purged(split, ts, label_end)


def test_the_embargo_purges_labels_ending_just_before_validation():
    ts, label_end = rows(sessions=4)
    start = holdout_split(ts, label_end).validation_start
    label_end = label_end.copy()
    close_call = np.flatnonzero(ts < start)[:5]
    label_end[close_call] = start - np.timedelta64(10, "m")  # inside a 30-minute embargo
    assert holdout_split(ts, label_end).purged == 5
    assert holdout_split(ts, label_end, embargo=np.timedelta64(5, "m")).purged == 0


@pytest.mark.parametrize("seed", range(1, 9))
def test_no_train_label_reaches_into_validation_minus_embargo_on_random_data(seed):
    ts, label_end = rows(sessions=15, seed=seed)
    embargo = np.timedelta64(int(np.random.default_rng(seed).integers(0, 180)), "m")
    split = holdout_split(ts, label_end, embargo=embargo, validation_fraction=0.3)
    assert_purged(split, ts, label_end, embargo)
    assert_whole_sessions(split, ts)
    assert split.purged > 0  # multi-day labels: the property is not vacuous
    candidates = (ts.astype("datetime64[D]") < split.validation_start.astype("datetime64[D]")).sum()
    assert split.train.size + split.purged == candidates
    for fold in walk_forward_splits(
        ts, label_end, train_sessions=5, validation_sessions=2, embargo=embargo
    ):
        assert_purged(fold, ts, label_end, embargo)
        assert_whole_sessions(fold, ts)


def test_sessions_given_explicitly_define_the_validation_block():
    ts, label_end = rows(sessions=4)
    # A "session" that groups two UTC days at a time: two sessions, the last one validates.
    session = np.where(ts < np.datetime64("2024-11-06", "ns"), "first", "second")
    split = holdout_split(ts, label_end, validation_fraction=0.5, session=session)
    assert (session[split.validation] == "second").all()
    assert split.validation.size == (session == "second").sum()


def test_walk_forward_folds_move_forward_and_never_overlap_their_validation():
    ts, label_end = rows(sessions=20)
    folds = walk_forward_splits(ts, label_end, train_sessions=6, validation_sessions=2)
    assert len(folds) == (20 - 8) // 2 + 1
    starts = [fold.validation_start for fold in folds]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    for fold in folds:
        assert ts[fold.train].max() < fold.validation_start
        assert fold.validation_start <= fold.validation_end
        assert np.intersect1d(fold.train, fold.validation).size == 0
        assert np.unique(ts[fold.train].astype("datetime64[D]")).size == 6
        assert np.unique(ts[fold.validation].astype("datetime64[D]")).size == 2
    # With the default step the validation blocks tile the sessions after the first window.
    for earlier, later in itertools.pairwise(folds):
        assert earlier.validation_end < later.validation_start
        assert np.intersect1d(earlier.validation, later.validation).size == 0


def test_walk_forward_step_sets_how_far_each_fold_moves():
    ts, label_end = rows(sessions=12)
    folds = walk_forward_splits(
        ts, label_end, train_sessions=4, validation_sessions=3, step_sessions=1
    )
    assert len(folds) == 12 - 7 + 1
    gaps = np.diff([fold.validation_start for fold in folds])
    assert (gaps == np.timedelta64(1, "D")).all()


def test_max_folds_keeps_the_most_recent_folds():
    ts, label_end = rows(sessions=20)
    every = walk_forward_splits(ts, label_end, train_sessions=6, validation_sessions=2)
    last = walk_forward_splits(ts, label_end, train_sessions=6, validation_sessions=2, max_folds=3)
    assert [f.validation_start for f in last] == [f.validation_start for f in every[-3:]]
    assert all(np.array_equal(a.train, b.train) for a, b in zip(last, every[-3:], strict=True))


def test_fewer_than_two_sessions_cannot_be_split():
    ts, label_end = rows(sessions=1)
    with pytest.raises(ValueError, match="at least 2 sessions"):
        holdout_split(ts, label_end)


def test_a_validation_fraction_outside_zero_to_one_is_rejected():
    ts, label_end = rows(sessions=4)
    for fraction in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="validation_fraction"):
            holdout_split(ts, label_end, validation_fraction=fraction)
    with pytest.raises(ValueError, match="no session to train on"):
        holdout_split(ts, label_end, validation_fraction=0.9)


def test_purging_every_training_row_is_an_error():
    ts, label_end = rows(sessions=4)
    with pytest.raises(ValueError, match="no training rows"):
        holdout_split(ts, label_end, embargo=np.timedelta64(10, "D"))


def test_bad_inputs_are_rejected():
    ts, label_end = rows(sessions=4)
    with pytest.raises(ValueError, match="differ in length"):
        holdout_split(ts, label_end[:-1])
    with pytest.raises(ValueError, match="precedes"):
        holdout_split(label_end, ts)
    with pytest.raises(ValueError, match="embargo"):
        holdout_split(ts, label_end, embargo=np.timedelta64(-1, "m"))
    with pytest.raises(ValueError, match="datetimes"):
        holdout_split(np.linspace(0.0, 1.0, ts.size), label_end)
    with pytest.raises(ValueError, match="train_sessions"):
        walk_forward_splits(ts, label_end, train_sessions=0, validation_sessions=1)
    with pytest.raises(ValueError, match="step_sessions"):
        walk_forward_splits(ts, label_end, train_sessions=1, validation_sessions=1, step_sessions=0)
    with pytest.raises(ValueError, match="max_folds"):
        walk_forward_splits(ts, label_end, train_sessions=1, validation_sessions=1, max_folds=0)
    with pytest.raises(ValueError, match="at least 5 sessions"):
        walk_forward_splits(ts, label_end, train_sessions=3, validation_sessions=2)
