"""Feature engineering: eight calculator families on five timeframes, a registry and analyses."""
