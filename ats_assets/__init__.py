"""ATS asset definitions: partitions, market-data assets and checks, and the code location."""

import warnings

import dagster as _dg

# BackfillPolicy is marked beta in Dagster 1.13; single-run backfills are what our daily assets
# need (the CLI's --partition-range requires them), so the warning is noise for every user.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=_dg.BetaWarning)
