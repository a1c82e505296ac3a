"""Standalone report files (HTML) under ``$ATS_DATA_DIR/reports/<asset>/<partition>.html``."""

import os
import uuid
from pathlib import Path

import dagster as dg
from pydantic import Field


class ReportStore(dg.ConfigurableResource):
    """Writes reports atomically (a re-materialization replaces the file, never half-writes it)."""

    root: str = Field(description="Folder holding one sub-folder of reports per asset.")

    def path(self, asset: str, partition: str, suffix: str = ".html") -> Path:
        return Path(self.root) / asset / f"{partition}{suffix}"

    def save(self, asset: str, partition: str, content: str, suffix: str = ".html") -> Path:
        target = self.path(asset, partition, suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
        scratch.write_text(content, encoding="utf-8")
        os.replace(scratch, target)
        return target
