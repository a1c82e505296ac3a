"""Fake vendor servers on 127.0.0.1 that speak each vendor's wire format and fail on request."""
