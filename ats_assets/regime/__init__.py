"""Market-regime detection: per-session regime labels with probabilities, and their change points."""
