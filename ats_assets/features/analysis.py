"""Feature analyses: correlation between features and univariate information coefficients.

Pure functions over the ``features`` table (and bars for forward returns); plots are rendered to
PNG for asset metadata.
"""

import base64
import io
import warnings

import numpy as np
import polars as pl

FORWARD_MINUTES = 60


def feature_columns(features: pl.DataFrame) -> list[str]:
    return [c for c in features.columns if c not in ("session", "ticker", "ts")]


def correlation(features: pl.DataFrame, max_rows: int = 200_000, seed: int = 0) -> pl.DataFrame:
    """Pearson correlation of every pair of feature columns (long form: a, b, corr)."""
    columns = feature_columns(features)
    sample = features.sample(min(max_rows, len(features)), seed=seed) if len(features) else features
    matrix = sample.select(pl.col(columns).cast(pl.Float64)).to_numpy()
    # Pairwise-complete: standardise each column over its own non-null rows, zeros elsewhere.
    with warnings.catch_warnings():  # an all-null column has no mean: NaN, handled below
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(matrix, axis=0)
        std = np.nanstd(matrix, axis=0)
    z = np.where(np.isnan(matrix), 0.0, (matrix - mean) / np.where(std > 0, std, np.nan))
    z = np.nan_to_num(z)
    present = (~np.isnan(matrix)).astype(float)
    counts = present.T @ present
    corr = np.clip((z.T @ z) / np.maximum(counts, 1), -1.0, 1.0)
    corr[counts < 30] = np.nan
    constant = ~(std > 0)  # a constant (or empty) column has no correlation with anything
    corr[constant, :] = np.nan
    corr[:, constant] = np.nan
    n = len(columns)
    return pl.DataFrame(
        {
            "feature_a": np.repeat(columns, n),
            "feature_b": np.tile(columns, n),
            "corr": corr.ravel(),
        }
    ).with_columns(pl.col("corr").fill_nan(None))


def forward_returns(bars: pl.DataFrame, minutes: int = FORWARD_MINUTES) -> pl.DataFrame:
    """``ticker``, ``ts``, ``forward_return``: log return from this bar's close to the close
    ``minutes`` bars later in the same session (null near the close)."""
    return bars.sort("ticker", "ts").select(
        "ticker",
        "ts",
        forward_return=(pl.col("close").shift(-minutes).log() - pl.col("close").log()).over(
            "ticker", "session"
        ),
    )


def information_coefficients(features: pl.DataFrame, returns: pl.DataFrame) -> pl.DataFrame:
    """Spearman rank correlation of each feature with the forward return (the IC), per feature."""
    joined = features.join(returns, on=["ticker", "ts"], how="inner").filter(
        pl.col("forward_return").is_not_null()
    )
    rows = []
    for column in feature_columns(features):
        pair = joined.select(column, "forward_return").drop_nulls().fill_nan(None).drop_nulls()
        if len(pair) < 100:
            rows.append({"feature": column, "ic": None, "abs_ic": None, "rows": len(pair)})
            continue
        ic = pair.select(pl.corr(column, "forward_return", method="spearman")).item()
        ic = None if ic is None or np.isnan(ic) else float(ic)
        rows.append(
            {
                "feature": column,
                "ic": ic,
                "abs_ic": abs(ic) if ic is not None else None,
                "rows": len(pair),
            }
        )
    return pl.DataFrame(
        rows, schema={"feature": pl.Utf8, "ic": pl.Float64, "abs_ic": pl.Float64, "rows": pl.Int64}
    ).sort("abs_ic", descending=True, nulls_last=True)


def _png_markdown(fig) -> str:
    """``fig`` as a Markdown image (an 80 dpi PNG inlined as base64); the figure is closed."""
    import matplotlib.pyplot as plt

    try:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    finally:
        plt.close(fig)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f"![plot](data:image/png;base64,{encoded})"


def heatmap_markdown(corr: pl.DataFrame, max_features: int = 60) -> str:
    """A correlation heatmap as a Markdown image (PNG, base64)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = corr["feature_a"].unique(maintain_order=True).to_list()[:max_features]
    wide = corr.filter(pl.col("feature_a").is_in(names) & pl.col("feature_b").is_in(names))
    matrix = wide["corr"].to_numpy().astype(float).reshape(len(names), len(names))
    fig, ax = plt.subplots(figsize=(12, 10))
    image = ax.imshow(matrix, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    ax.set_yticks(range(len(names)), names, fontsize=6)
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_title(f"Feature correlation (first {len(names)} features)")
    return _png_markdown(fig)


def ic_bar_markdown(ics: pl.DataFrame, top: int = 25) -> str:
    """The top features by |IC| as a horizontal bar chart (Markdown image)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = ics.drop_nulls("ic").head(top)
    fig, ax = plt.subplots(figsize=(8, max(3, 0.3 * len(best))))
    ax.barh(best["feature"].to_list()[::-1], best["ic"].to_list()[::-1], color="tab:blue")
    ax.set_xlabel(f"Spearman IC with the {FORWARD_MINUTES}-minute forward return")
    ax.tick_params(axis="y", labelsize=7)
    return _png_markdown(fig)
