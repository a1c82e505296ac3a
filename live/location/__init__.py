"""The ``live`` code location: the Dagster job, assets and schedule around ``live.session``.

Unlike the rest of ``live`` (plain Python, no Dagster), this package imports Dagster and the
asset graph's modules; ``live/location/definitions.py`` is the code location's entry point.
"""
