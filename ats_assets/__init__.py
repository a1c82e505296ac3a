"""ATS asset definitions: partitions, market-data assets and checks, and the code location."""
