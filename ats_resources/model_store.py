"""Content-addressed, verified storage of trained model artifacts on disk (no pickle)."""

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

MANIFEST = "manifest.json"
_STR_COLUMNS = ("kind", "feature_version", "code_version", "train_start", "train_end", "device")
_REF_KEYS = ("asset", "partition", "model_version", "sha256")
REGISTRY_SCHEMA: dict[str, Any] = {
    **dict.fromkeys((*_REF_KEYS, *_STR_COLUMNS), pl.String),
    **{"duration_s": pl.Float64, "metrics": pl.String},
    **{"created_at": pl.Datetime("us", "UTC"), "path": pl.String},
}


class ModelIntegrityError(RuntimeError):
    """A stored model's files do not match the hashes its manifest recorded."""


class ModelNotFoundError(LookupError):
    """No stored model exists for the asked asset, partition or version."""


@dataclass(frozen=True)
class StoredModel:
    """A reference to one stored model version; ``path`` is its folder."""

    asset: str
    partition: str
    model_version: str
    sha256: str
    path: str
    manifest: dict = field(compare=False, repr=False)

    @property
    def files(self) -> dict[str, str]:
        """File name -> sha256 hex of its content, as recorded at save time."""
        return dict(self.manifest["files"])


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def artifact_sha256(file_hashes: dict[str, str]) -> str:
    """The artifact hash: sha256 of the UTF-8 lines ``"{name}:{file_sha256}\\n"`` sorted by name.

    It depends only on file names and contents, so identical models hash alike; its first 16
    hex characters are the ``model_version``.
    """
    lines = "".join(f"{name}:{digest}\n" for name, digest in sorted(file_hashes.items()))
    return _sha256(lines.encode())


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not name or name[0] == "." or {"/", "\\", "\0"} & set(name):
        raise ValueError(f"unsafe {what} {name!r}: give a plain name, no '/' or leading '.'")
    return name


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _ref(folder: Path) -> StoredModel:
    try:
        m = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise ModelIntegrityError(
            f"{folder / MANIFEST} is unreadable ({exc}); re-materialize the model asset"
        ) from exc
    return StoredModel(**{k: m[k] for k in _REF_KEYS}, path=str(folder), manifest=m)


class ModelStore(dg.ConfigurableResource):
    """Model artifacts under ``<root>/<asset>/<partition>/<model_version>/`` with a manifest."""

    root: str = Field(description="Directory holding the models; created on demand.")

    def _partition_dir(self, asset: str, partition: str) -> Path:
        asset, partition = _check_name(asset, "asset"), _check_name(partition, "partition")
        return Path(self.root).expanduser() / asset / partition

    def save(
        self, *, asset: str, partition: str, files: dict[str, bytes], manifest: dict
    ) -> StoredModel:
        """Store ``files`` (name -> bytes) with ``manifest``; identical content is stored once.

        The caller's manifest (JSON; dates and other objects are stored as str()) gains ``asset``,
        ``partition``, ``model_version``, ``files`` (name -> sha256 hex), ``sha256`` (see
        :func:`artifact_sha256`) and ``created_at`` (UTC ISO); these keys override the caller's.
        """
        if not files or MANIFEST in files:
            raise ValueError(f"a model needs at least one file, and {MANIFEST!r} is reserved")
        for name in files:
            _check_name(name, "file name")
        parent = self._partition_dir(asset, partition)
        hashes = {name: _sha256(data) for name, data in sorted(files.items())}
        sha = artifact_sha256(hashes)
        version = sha[:16]
        target = parent / version
        if (target / MANIFEST).exists():
            return _ref(target)
        full = manifest | dict(asset=asset, partition=partition, model_version=version)
        full |= dict(files=hashes, sha256=sha, created_at=datetime.now(UTC).isoformat())
        parent.mkdir(parents=True, exist_ok=True)
        tmp = parent / f".{version}.tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            for name, data in files.items():
                _write(tmp / name, data)
            _write(tmp / MANIFEST, json.dumps(full, indent=2, sort_keys=True, default=str).encode())
            os.rename(tmp, target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            # a concurrent save of the same content may have won the rename: its copy is identical
            if not (target / MANIFEST).exists():
                raise
        return _ref(target)

    def load(
        self, asset: str, partition: str, model_version: str | None = None
    ) -> tuple[StoredModel, dict[str, bytes]]:
        """A version (newest by ``created_at`` when None) and its verified files: name -> bytes."""
        found = self._partition_dir(asset, partition).glob(f"[!.]*/{MANIFEST}")
        refs = [_ref(f.parent) for f in found if model_version in (None, f.parent.name)]
        if not refs:
            which = f"version {model_version} of " if model_version else ""
            raise ModelNotFoundError(
                f"no stored model for {which}asset {asset!r} partition {partition!r} under "
                f"{self.root}; materialize asset {asset!r} for partition {partition!r} first"
            )
        ref = max(refs, key=lambda r: (r.manifest["created_at"], r.model_version))
        return ref, self.load_ref(ref)

    def load_ref(self, ref: StoredModel) -> dict[str, bytes]:
        """The files of ``ref``, each checked against the sha256 recorded at save time."""
        folder = Path(ref.path)
        if not (folder / MANIFEST).exists():
            raise ModelNotFoundError(
                f"stored model {ref.asset}/{ref.partition} version {ref.model_version} is gone "
                f"from {folder}; materialize asset {ref.asset!r} for partition {ref.partition!r}"
            )

        def mismatch(name: str, expected: str, found: str) -> ModelIntegrityError:
            return ModelIntegrityError(
                f"file {name!r} of model {ref.asset}/{ref.partition} version {ref.model_version}"
                f" fails verification: expected sha256 {expected[:12]}…, found {found}; "
                f"re-materialize asset {ref.asset!r} for partition {ref.partition!r}"
            )

        out: dict[str, bytes] = {}
        for name, expected in sorted(_ref(folder).files.items()):
            if not (folder / name).is_file():
                raise mismatch(name, expected, "no file")
            out[name] = (folder / name).read_bytes()
            if (actual := _sha256(out[name])) != expected:
                raise mismatch(name, expected, f"{actual[:12]}…")
        actual = artifact_sha256({name: _sha256(data) for name, data in out.items()})
        # the folder name is the content address: a manifest edited to match edited files fails
        if actual != ref.sha256 or not actual[:16] == ref.model_version == folder.name:
            raise mismatch(MANIFEST, folder.name, f"{actual[:12]}… over its files")
        return out

    def verify(self, ref: StoredModel) -> bool:
        """True when every file of ``ref`` still matches its recorded sha256."""
        try:
            self.load_ref(ref)
        except (ModelIntegrityError, ModelNotFoundError):
            return False
        return True

    def registry(self) -> pl.DataFrame:
        """One row per stored model version, sorted by asset, partition and ``created_at``."""
        root = Path(self.root).expanduser()
        rows = []
        for path in sorted(root.glob(f"[!.]*/[!.]*/[!.]*/{MANIFEST}")):
            m = _ref(path.parent).manifest
            row = {k: None if m.get(k) is None else str(m[k]) for k in (*_REF_KEYS, *_STR_COLUMNS)}
            metrics, duration = m.get("metrics"), m.get("duration_s")
            row["duration_s"] = None if duration is None else float(duration)
            row["metrics"] = None if metrics is None else json.dumps(metrics, sort_keys=True)
            row["created_at"] = datetime.fromisoformat(m["created_at"])
            rows.append(row | {"path": str(path.parent)})
        return pl.DataFrame(rows, schema=REGISTRY_SCHEMA).sort("asset", "partition", "created_at")
