"""The feature catalogue (every family's features) and the registry table describing it."""

import hashlib
import importlib
import inspect
import json
from functools import cache

import polars as pl

from ats_assets.features import frames, pipeline
from ats_assets.features.definition import FAMILIES, Feature


@cache
def catalogue() -> tuple[Feature, ...]:
    """All features, family by family, in a stable order; names are unique."""
    features: list[Feature] = []
    for family in FAMILIES:
        module = importlib.import_module(f"ats_assets.features.families.{family}")
        features.extend(module.FEATURES)
    names = [f.name for f in features]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"feature names must be unique; repeated: {duplicated}")
    return tuple(features)


def registry_frame(features: tuple[Feature, ...] | None = None) -> pl.DataFrame:
    """One row per feature column (feature x timeframe)."""
    features = catalogue() if features is None else features
    rows = [
        {
            "column": f.column(tf),
            "name": f.name,
            "family": f.family,
            "timeframe": tf,
            "parameters": json.dumps(dict(f.params), sort_keys=True, default=str),
            "description": f.description,
            "warmup_bars": f.warmup_bars,
            "version": f.version,
        }
        for f in features
        for tf in f.timeframes
    ]
    return pl.DataFrame(rows)


def catalogue_version(features: tuple[Feature, ...] | None = None) -> str:
    """Changes when any feature definition or the pipeline that evaluates them changes."""
    features = catalogue() if features is None else features
    digest = hashlib.sha256()
    for feature in features:
        digest.update(f"{feature.name}:{feature.version};".encode())
    for module in (frames, pipeline):
        digest.update(inspect.getsource(module).encode())
    return digest.hexdigest()[:12]
