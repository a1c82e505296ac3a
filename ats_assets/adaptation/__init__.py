"""Adaptation between retrainings: ensemble re-weighting, strategy-parameter tuning and the
feature-importance tracker (pure functions here, assets in ``assets.py``)."""
