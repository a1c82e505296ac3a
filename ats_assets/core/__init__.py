"""Pure computation for ATS: polars in, polars out. Nothing here imports dagster."""
