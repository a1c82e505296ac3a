"""Market-regime detector: a forward-filtered Gaussian HMM on whole-market volatility features.

Per session the market is summarised by statistics of all tickers' bars: from daily bars the
mean log intraday range and the log cross-sectional dispersion of open-to-close returns
(``market_daily_features``, the default inputs); from 1-minute bars, sharper, the realized
volatility and lag-1 autocorrelation of the equal-weighted market's minute returns
(``market_intraday_features``). A 3-state Gaussian hidden Markov model (one covariance shared by
the states) is fitted to a window by expectation-maximisation, starting from and shrunk towards a
detector calibrated once on a long simulated history (``RegimeDetector.fit``), so a window that
never visits a regime still names the others right. States are ``REGIMES`` (calm, volatile,
crash), in rising volatility. ``detect`` runs the forward filter only: session d's label uses
sessions <= d and never changes when later sessions arrive. ``change_points`` turns the labels
into declared changes with hysteresis; ``detection_quality`` scores them against a ground-truth
regime path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from ats_resources.simulation.market import REGIMES

# The detector's default inputs, from ``market_daily_features``.
DETECTOR_FEATURES = ("log_range", "log_dispersion")
# Sharper inputs when 1-minute bars are at hand: ``market_intraday_features`` joined with
# ``market_daily_features`` on ``session``.
INTRADAY_FEATURES = ("log_market_vol", "market_autocorrelation", "log_dispersion")
PROBABILITY_COLUMNS = tuple(f"p_{name}" for name in REGIMES)
FULL_SESSION_MINUTES = 390
# Where the training sessions, sorted by volatility, are split into calm / volatile / crash to
# start EM; one start per pair, the fit with the highest likelihood wins. Several starts because
# a single one can settle with two states on the crowded calm sessions.
_INITIAL_SPLITS = ((0.5, 0.9), (0.6, 0.93), (0.7, 0.95), (0.8, 0.97), (0.85, 0.98))
_COVARIANCE_FLOOR = 1e-4  # squared feature units: keeps an uninformed fit's covariance invertible
_CHANGE_SCHEMA = {
    "session": pl.Date,
    "from_regime": pl.Utf8,
    "to_regime": pl.Utf8,
    "probability": pl.Float64,
}


def market_daily_features(daily_bars: pl.DataFrame) -> pl.DataFrame:
    """Whole-market statistics per session from daily bars of all tickers, sorted by session.

    ``daily_bars`` has ``ticker, session, open, high, low, close`` (dollars; ``volume`` is not
    used). Returns per session: ``n_tickers``; ``market_return``, the equal-weighted
    open-to-close return (fraction); ``mean_abs_return``, the cross-sectional mean of
    |open-to-close return| (fraction); ``mean_range``, the mean (high - low) / open (fraction);
    ``dispersion``, the cross-sectional standard deviation of open-to-close log returns; and the
    logs ``log_range`` (mean of log((high - low) / open)) and ``log_dispersion`` (log of
    ``dispersion``), which rise with volatility. Each session uses only its own bars.
    """
    log_return = (pl.col("close") / pl.col("open")).log()
    day_range = (pl.col("high") - pl.col("low")) / pl.col("open")
    return (
        daily_bars.lazy()
        .filter(pl.col("open") > 0)
        .group_by("session")
        .agg(
            n_tickers=pl.len().cast(pl.Int64),
            market_return=(pl.col("close") / pl.col("open") - 1.0).mean(),
            mean_abs_return=(pl.col("close") / pl.col("open") - 1.0).abs().mean(),
            mean_range=day_range.mean(),
            dispersion=log_return.std(),
            # A ticker without a range (a halted name) has no log; it is left out of the mean.
            log_range=day_range.filter(day_range > 0).log().mean(),
        )
        .with_columns(log_dispersion=pl.col("dispersion").log())
        .sort("session")
        .collect()
    )


def market_intraday_features(minute_bars: pl.DataFrame) -> pl.DataFrame:
    """Whole-market statistics per session from 1-minute bars of all tickers, sorted by session.

    ``minute_bars`` has ``ticker, session, ts, close``. The market's minute return is the
    equal-weighted mean of the tickers' 1-minute log returns (within the session, so overnight
    gaps are left out). Returns per session: ``market_realized_vol``, the root mean square of the
    market minute returns times sqrt(390) (fraction per full session); ``log_market_vol``, its
    log; and
    ``market_autocorrelation``, the lag-1 autocorrelation of the market minute returns
    (negative when intraday moves revert). Each session uses only its own bars.
    """
    minute_return = pl.col("close").log().diff().over("ticker", "session", order_by="ts").alias("r")
    market = (
        minute_bars.lazy()
        .filter(pl.col("close") > 0)
        .select("session", "ts", minute_return)
        .drop_nulls("r")
        .group_by("session", "ts")
        .agg(pl.col("r").mean())
    )
    return (
        market.group_by("session")
        .agg(
            # Scaled to a full session, so an early close (210 minutes) does not look calm.
            market_realized_vol=((pl.col("r") ** 2).mean() * FULL_SESSION_MINUTES).sqrt(),
            market_autocorrelation=pl.corr(
                pl.col("r").sort_by("ts"), pl.col("r").sort_by("ts").shift(1)
            ),
        )
        .with_columns(log_market_vol=pl.col("market_realized_vol").log())
        .sort("session")
        .collect()
    )


def _log_densities(x: np.ndarray, means: np.ndarray, covariance: np.ndarray) -> np.ndarray:
    """Log density of each row of ``x`` (sessions x features) under N(means[k], covariance),
    one column per state."""
    chol = np.linalg.cholesky(covariance)
    log_det = 2.0 * np.log(np.diag(chol)).sum()
    constant = log_det + x.shape[1] * math.log(2.0 * math.pi)
    columns = [(np.linalg.solve(chol, (x - mean).T) ** 2).sum(axis=0) for mean in means]
    return -0.5 * (np.stack(columns, axis=1) + constant)


def _stationary(transitions: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eig(transitions.T)
    weights = np.abs(np.real(vectors[:, np.argmin(np.abs(values - 1.0))]))
    return weights / weights.sum()


@dataclass(frozen=True, eq=False)
class RegimeDetector:
    """A 3-state Gaussian HMM; state k is ``REGIMES[k]`` (calm, volatile, crash).

    ``means`` (states x features) and the ``covariance`` all states share (features x features)
    are in the units of ``features``; ``transitions[i, j]`` is the probability of moving from
    state i to state j from one session to the next.
    """

    features: tuple[str, ...]
    means: np.ndarray
    covariance: np.ndarray
    transitions: np.ndarray

    @classmethod
    def calibrated(cls, features: tuple[str, ...] = DETECTOR_FEATURES) -> RegimeDetector:
        """The detector fitted once on a long simulated history (see ``_CALIBRATION``)."""
        if features not in _CALIBRATION:
            raise KeyError(f"no calibrated detector for features {features}")
        means, covariance, transitions = _CALIBRATION[features]
        return cls(features, np.array(means), np.array(covariance), np.array(transitions))

    @classmethod
    def fit(
        cls,
        training: pl.DataFrame,
        features: tuple[str, ...] = DETECTOR_FEATURES,
        prior: RegimeDetector | Literal["calibrated"] | None = "calibrated",
        prior_sessions: float = 20.0,
        iterations: int = 200,
        tolerance: float = 1e-6,
        min_separation: float = 3.0,
    ) -> RegimeDetector:
        """Fit by expectation-maximisation (Baum-Welch) on ``training``'s sessions, in order.

        With a ``prior`` detector (by default ``calibrated(features)``) EM starts from it and
        each state's mean is shrunk towards the prior's as if ``prior_sessions`` more sessions
        sat there; the covariance and each row of transitions get as many pseudo-sessions. So a
        window that never visits a regime (a calm quarter without a crash) keeps that regime
        where the prior puts it instead of splitting another regime in two to fill the slot.

        With ``prior=None`` EM is uninformed: it starts from several splits of the sessions by
        ``features[0]`` (which must grow with volatility: it orders the states into
        ``REGIMES``), keeps the most likely fit, and raises ``ValueError`` when neighbouring
        states lie less than ``min_separation`` standard deviations apart (Mahalanobis distance
        under the shared covariance): the window lacks a regime. ``prior_sessions`` then only
        adds sticky pseudo-transitions. Sessions with a missing feature are skipped.
        """
        x = training.select(features).drop_nulls().to_numpy().astype(float)
        x = x[np.isfinite(x).all(axis=1)]
        if isinstance(prior, str):
            prior = cls.calibrated(tuple(features)) if tuple(features) in _CALIBRATION else None
        if prior is not None:
            if prior.features != tuple(features):
                raise ValueError(f"prior is on {prior.features}, not {tuple(features)}")
            if len(x) == 0:
                return prior
            means, covariance, transitions, _ = _expectation_maximisation(
                x, prior, prior, prior_sessions, iterations, tolerance
            )
            return cls(tuple(features), means, covariance, transitions)

        n_states = len(REGIMES)
        if len(x) < 10 * n_states:
            raise ValueError(f"need at least {10 * n_states} training sessions, got {len(x)}")
        sticky = np.full((n_states, n_states), 0.05 / (n_states - 1))
        np.fill_diagonal(sticky, 0.95)
        ranks = np.argsort(np.argsort(x[:, 0])) / len(x)
        fits = []
        for splits in _INITIAL_SPLITS:
            assignment = np.eye(n_states)[np.searchsorted(splits, ranks, side="right")]
            means, covariance = _gaussian_step(x, assignment, None, 0.0)
            start = cls(tuple(features), means, covariance, sticky)
            fits.append(
                _expectation_maximisation(x, start, None, prior_sessions, iterations, tolerance)
            )
        means, covariance, transitions, _ = max(fits, key=lambda fit: fit[3])
        order = np.argsort(means[:, 0])
        means = means[order]
        separation = _separation(means, covariance)
        if separation.min() < min_separation:
            # Typically a window without one of the regimes: EM then splits another in two.
            raise ValueError(
                "the training window does not show three distinct regimes: state means are "
                f"{np.round(separation, 1).tolist()} standard deviations apart "
                f"(need {min_separation}); train on a longer window or with a prior"
            )
        return cls(tuple(features), means, covariance, transitions[np.ix_(order, order)])

    def detect(self, features: pl.DataFrame) -> pl.DataFrame:
        """Filtered regime per session of ``features`` (sorted by session first).

        Returns ``session``, ``regime`` (the most probable of ``REGIMES``), ``probability`` (its
        filtered probability, in [0, 1]) and ``p_<regime>`` for each regime. Filtering, not
        smoothing: session d's row depends only on sessions <= d. A session with a missing
        feature carries the previous probabilities forward through the transition matrix.
        """
        frame = features.sort("session")
        x = frame.select(self.features).to_numpy().astype(float)
        observed = np.isfinite(x).all(axis=1)
        log_b = np.zeros((len(x), len(REGIMES)))
        log_b[observed] = _log_densities(x[observed], self.means, self.covariance)
        filtered = _forward_filter(log_b, self.transitions)
        best = filtered.argmax(axis=1)
        return pl.DataFrame(
            {
                "session": frame["session"],
                "regime": [REGIMES[k] for k in best],
                "probability": filtered[np.arange(len(best)), best],
                **{name: filtered[:, k] for k, name in enumerate(PROBABILITY_COLUMNS)},
            },
            schema_overrides={"regime": pl.Utf8, "probability": pl.Float64},
        )


def _separation(means: np.ndarray, covariance: np.ndarray) -> np.ndarray:
    """Mahalanobis distance between each pair of neighbouring state means."""
    steps = np.diff(means, axis=0)
    return np.sqrt(np.einsum("ij,ij->i", steps @ np.linalg.inv(covariance), steps))


def _expectation_maximisation(
    x: np.ndarray,
    start: RegimeDetector,
    prior: RegimeDetector | None,
    prior_sessions: float,
    iterations: int,
    tolerance: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """EM from ``start``'s parameters: means, covariance, transitions and the log likelihood.

    Pseudo-transitions come from ``prior`` (or from ``start``, sticky, without one); means and
    covariance are shrunk towards ``prior``'s when there is one.
    """
    means, covariance, transitions = start.means, start.covariance, start.transitions
    pseudo = prior_sessions * (prior.transitions if prior is not None else start.transitions)
    previous = log_likelihood = -np.inf
    for _ in range(iterations):
        log_b = _log_densities(x, means, covariance)
        gamma, xi_sum, log_likelihood = _forward_backward(log_b, transitions)
        means, covariance = _gaussian_step(x, gamma, prior, prior_sessions)
        counts = xi_sum + pseudo
        transitions = counts / counts.sum(axis=1, keepdims=True)
        if log_likelihood - previous < tolerance:
            break
        previous = log_likelihood
    return means, covariance, transitions, log_likelihood


def _gaussian_step(
    x: np.ndarray, gamma: np.ndarray, prior: RegimeDetector | None, prior_sessions: float
) -> tuple[np.ndarray, np.ndarray]:
    """Means per state and the pooled covariance (M-step), shrunk towards ``prior``'s."""
    weights = gamma.sum(axis=0)
    if prior is None:
        means = (gamma.T @ x) / (weights[:, None] + 1e-9)
        pseudo_covariance, pseudo_sessions = _COVARIANCE_FLOOR * np.eye(x.shape[1]), 1.0
    else:
        means = (gamma.T @ x + prior_sessions * prior.means) / (weights + prior_sessions)[:, None]
        pseudo_covariance, pseudo_sessions = prior_sessions * prior.covariance, prior_sessions
    # One covariance shared by all states: the noise of log-volatility estimates hardly depends
    # on the level, and a shared shape stops EM from splitting the crowded calm state in two
    # instead of separating the rare crash sessions.
    scatter = sum(
        (gamma[:, k, None] * (x - means[k])).T @ (x - means[k]) for k in range(gamma.shape[1])
    )
    return means, (scatter + pseudo_covariance) / (len(x) + pseudo_sessions)


def _forward_filter(log_b: np.ndarray, transitions: np.ndarray) -> np.ndarray:
    """P(state at t | observations up to t) for each t, from log emission densities."""
    b = np.exp(log_b - log_b.max(axis=1, keepdims=True))
    out = np.empty_like(b)
    prior = _stationary(transitions)
    for t in range(len(b)):
        posterior = prior * b[t]
        total = posterior.sum()
        # An observation impossible under every state (numerically) leaves the prediction as is.
        out[t] = posterior / total if total > 0 else prior
        prior = out[t] @ transitions
    return out


def _forward_backward(
    log_b: np.ndarray, transitions: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Smoothed state probabilities, summed expected transitions and the log likelihood."""
    shift = log_b.max(axis=1, keepdims=True)
    b = np.exp(log_b - shift)
    n, k = b.shape
    alpha, scale = np.empty((n, k)), np.empty(n)
    prior = _stationary(transitions)
    for t in range(n):
        a = prior * b[t]
        scale[t] = a.sum()
        alpha[t] = a / scale[t]
        prior = alpha[t] @ transitions
    beta = np.ones((n, k))
    xi_sum = np.zeros((k, k))
    for t in range(n - 2, -1, -1):
        weighted = b[t + 1] * beta[t + 1]
        xi_sum += transitions * np.outer(alpha[t], weighted) / scale[t + 1]
        beta[t] = (transitions @ weighted) / scale[t + 1]
    gamma = alpha * beta
    gamma /= gamma.sum(axis=1, keepdims=True)
    return gamma, xi_sum, float(np.log(scale).sum() + shift.sum())


def change_points(
    detected: pl.DataFrame, min_probability: float = 0.95, persistence: int = 2
) -> pl.DataFrame:
    """Sessions where a regime change is declared from ``detect``'s output.

    The first session whose ``probability`` reaches ``min_probability`` sets the starting regime
    (not a change). Afterwards a change to regime R is declared on the session that completes
    ``persistence`` consecutive sessions labelled R with ``probability >= min_probability``,
    while the declared regime is not R; that hysteresis keeps a single doubtful session from
    flipping the declared regime. Returns ``session``, ``from_regime``, ``to_regime`` and
    ``probability`` (of R on the declaring session). Causal like ``detect``.
    """
    if persistence < 1:
        raise ValueError(f"persistence must be at least 1, got {persistence}")
    frame = detected.sort("session")
    rows: list[tuple] = []
    current: str | None = None
    candidate, run = None, 0
    for session, regime, probability in frame.select(
        "session", "regime", "probability"
    ).iter_rows():
        confident = regime if probability >= min_probability else None
        if current is None:
            current = confident
            continue
        if confident is None or confident == current:
            candidate, run = None, 0
            continue
        run = run + 1 if confident == candidate else 1
        candidate = confident
        if run >= persistence:
            rows.append((session, current, confident, float(probability)))
            current, candidate, run = confident, None, 0
    return pl.DataFrame(rows, schema=_CHANGE_SCHEMA, orient="row")


def detection_quality(
    true_path: pl.DataFrame,
    declared: pl.DataFrame,
    tolerance: int = 10,
    min_episode: int = 5,
) -> dict[str, float | int | None]:
    """Score declared changes (``change_points``) against the true regime path.

    ``true_path`` has ``session, regime`` for consecutive sessions; delays are counted in its
    sessions. Definitions:

    * A *true change* is a session whose regime differs from the previous session's and whose
      new episode lasts at least ``min_episode`` sessions; a shorter episode (the simulated chain
      often flips for a day or two) is not one to be detected.
    * The *declared regime* on a session is the ``to_regime`` of the latest declared change at
      or before it; before the first declared change, that change's ``from_regime``.
    * A true change to R at session t is *detected* with delay s - t, where s is the first
      session in [t, t + ``tolerance``] on which the declared regime is R (0: declared at the
      close of the new regime's first session, or R was declared already); otherwise *missed*.
    * A declared change to R on session s is a *false alarm* unless the true regime at s is R or
      the truth changed to R (in an episode of any length) within [s - ``tolerance``, s].

    Returns ``true_changes``, ``detected``, ``missed``, ``false_alarms`` (counts) and
    ``median_delay``, ``max_delay`` (sessions; None when nothing was detected).
    """
    path = true_path.sort("session")
    truth = path["regime"].to_list()
    position = {day: i for i, day in enumerate(path["session"].to_list())}
    starts = [i for i in range(1, len(truth)) if truth[i] != truth[i - 1]]
    ends = [*starts[1:], len(truth)]
    changes = [t for t, end in zip(starts, ends, strict=True) if end - t >= min_episode]

    rows = [
        (position[day], before, after)
        for day, before, after in declared.sort("session")
        .select("session", "from_regime", "to_regime")
        .iter_rows()
        if day in position
    ]
    held: list[str | None] = [rows[0][1] if rows else None] * len(truth)
    for s, _, after in rows:
        held[s:] = [after] * (len(truth) - s)

    delays = []
    for t in changes:
        window = held[t : t + tolerance + 1]
        if truth[t] in window:
            delays.append(window.index(truth[t]))

    def explained(s: int, regime: str) -> bool:
        return truth[s] == regime or any(
            s - tolerance <= t <= s and truth[t] == regime for t in starts
        )

    return {
        "true_changes": len(changes),
        "detected": len(delays),
        "missed": len(changes) - len(delays),
        "false_alarms": sum(not explained(s, after) for s, _, after in rows),
        "median_delay": float(np.median(delays)) if delays else None,
        "max_delay": max(delays) if delays else None,
    }


# (means, covariance, transitions) per feature set, from ``RegimeDetector.fit(..., prior=None)``
# on 1258 sessions (2014-2018) of a simulated world that no test or figure uses
# (``SimulationConfig(seed=1, n_tickers=40)``): the states' features in log units.
_CALIBRATION: dict[tuple[str, ...], tuple[list, list, list]] = {
    ("log_range", "log_dispersion"): (
        [[-3.6913, -4.1816], [-3.1455, -3.7453], [-2.8161, -3.4661]],
        [[0.005963, 0.003699], [0.003699, 0.016994]],
        [[0.9629, 0.0291, 0.008], [0.0887, 0.8242, 0.0872], [0.0982, 0.249, 0.6528]],
    ),
    ("log_market_vol", "market_autocorrelation", "log_dispersion"): (
        [[-4.9084, -0.0016, -4.1818], [-4.006, -0.0065, -3.7397], [-3.4552, -0.259, -3.4197]],
        [
            [0.002342, -0.000027, 0.00025],
            [-0.000027, 0.003364, 0.000128],
            [0.00025, 0.000128, 0.016651],
        ],
        [[0.9636, 0.0294, 0.007], [0.0872, 0.8618, 0.051], [0.0962, 0.1859, 0.7179]],
    ),
}
