"""Monitoring: the exporter's metrics kept as daily history in the warehouse."""
