"""ATS asset definitions: partitions, market-data assets and checks, and the code location."""

import warnings

import dagster as _dg

# Two Dagster 1.13 features we rely on are marked beta: single-run backfills (the CLI's
# --partition-range requires them) and look-back mappings that reach before the first partition.
# Their warnings are noise for every user of this code location.
warnings.filterwarnings(
    "ignore",
    message=".*(backfill_policy|allow_nonexistent_upstream_partitions).*",
    category=_dg.BetaWarning,
)
