"""The model store: content-addressed versions, verified loads, a registry of what is stored."""

import hashlib
import json
import os
from datetime import date, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from ats_resources.model_store import (
    REGISTRY_SCHEMA,
    ModelIntegrityError,
    ModelNotFoundError,
    ModelStore,
    StoredModel,
    artifact_sha256,
)

ASSET = "xgboost_model"
DAY = "2024-03-05"
FILES = {"model.ubj": b"\x00booster-bytes", "config.json": b'{"max_depth": 6}'}
MANIFEST = {
    "kind": "xgboost",
    "metrics": {"auc": 0.61, "logloss": 0.68},
    "train_start": date(2024, 1, 2),
    "train_end": date(2024, 3, 4),
    "feature_version": "f3",
    "code_version": "abc123",
    "device": "cpu",
    "duration_s": 12,
}


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(root=str(tmp_path / "models"))


def save(store: ModelStore, files: dict[str, bytes] = FILES, **kw) -> StoredModel:
    args = {"asset": ASSET, "partition": DAY, "files": files, "manifest": MANIFEST} | kw
    return store.save(**args)


def versions_on_disk(store: ModelStore, partition: str = DAY) -> list[str]:
    return sorted(p.name for p in (Path(store.root) / ASSET / partition).iterdir())


def test_saving_identical_content_twice_keeps_one_version(store):
    first = save(store)
    second = save(store, manifest={"kind": "xgboost", "note": "retrained, same bytes"})

    assert second == first
    assert second.manifest["created_at"] == first.manifest["created_at"]
    assert versions_on_disk(store) == [first.model_version]


def test_a_different_model_is_stored_beside_the_first_without_overwriting_it(store):
    first = save(store)
    second = save(store, files={**FILES, "model.ubj": b"another booster"})

    assert second.model_version != first.model_version
    assert versions_on_disk(store) == sorted([first.model_version, second.model_version])
    assert store.load(ASSET, DAY, first.model_version)[1] == FILES


def test_the_version_is_the_artifact_hash_over_sorted_name_and_file_hash_lines(store):
    ref = save(store)

    file_hashes = {name: hashlib.sha256(data).hexdigest() for name, data in FILES.items()}
    lines = f"config.json:{file_hashes['config.json']}\nmodel.ubj:{file_hashes['model.ubj']}\n"
    assert ref.sha256 == hashlib.sha256(lines.encode()).hexdigest() == artifact_sha256(file_hashes)
    assert ref.model_version == ref.sha256[:16]
    assert ref.files == file_hashes
    assert Path(ref.path) == Path(store.root) / ASSET / DAY / ref.model_version


def test_the_manifest_on_disk_holds_the_callers_fields_and_the_stores(store):
    ref = save(store)

    on_disk = json.loads((Path(ref.path) / "manifest.json").read_text())
    assert on_disk["metrics"] == MANIFEST["metrics"]
    assert on_disk["train_start"] == "2024-01-02"
    assert (on_disk["asset"], on_disk["partition"]) == (ASSET, DAY)
    assert on_disk["model_version"] == ref.model_version
    assert on_disk["sha256"] == ref.sha256
    created = datetime.fromisoformat(on_disk["created_at"])
    assert created.utcoffset() is not None and created.utcoffset().total_seconds() == 0


def test_saved_files_load_back_byte_for_byte(store):
    ref = save(store)

    loaded_ref, files = store.load(ASSET, DAY)

    assert files == FILES
    assert loaded_ref == ref
    assert store.load_ref(ref) == FILES
    assert store.verify(ref)


def test_a_tampered_file_fails_verification_naming_the_file(store):
    ref = save(store)
    (Path(ref.path) / "model.ubj").write_bytes(b"flipped bits")

    with pytest.raises(ModelIntegrityError) as raised:
        store.load(ASSET, DAY)

    message = str(raised.value)
    expected = hashlib.sha256(FILES["model.ubj"]).hexdigest()[:12]
    actual = hashlib.sha256(b"flipped bits").hexdigest()[:12]
    assert "'model.ubj'" in message and expected in message and actual in message
    assert f"re-materialize asset '{ASSET}'" in message
    assert not store.verify(ref)


def test_a_missing_file_fails_verification(store):
    ref = save(store)
    (Path(ref.path) / "config.json").unlink()

    with pytest.raises(ModelIntegrityError, match=r"'config\.json'.*no file.*re-materialize"):
        store.load_ref(ref)


def test_a_manifest_edited_to_match_tampered_files_fails_verification(store):
    ref = save(store)
    folder = Path(ref.path)
    (folder / "model.ubj").write_bytes(b"swapped model")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["model.ubj"] = hashlib.sha256(b"swapped model").hexdigest()
    manifest["sha256"] = artifact_sha256(manifest["files"])
    (folder / "manifest.json").write_text(json.dumps(manifest))

    with pytest.raises(ModelIntegrityError) as raised:
        store.load(ASSET, DAY)
    assert "'manifest.json'" in str(raised.value) and ref.model_version[:12] in str(raised.value)


@pytest.mark.parametrize(
    "name", ["../escape.ubj", "sub/model.ubj", "..", ".", "a\\b", "", ".hidden", "manifest.json"]
)
def test_unsafe_file_names_are_refused(store, name):
    with pytest.raises(ValueError, match=r"unsafe|reserved"):
        save(store, files={name: b"x"})
    assert not Path(store.root).exists()


@pytest.mark.parametrize("field", ["asset", "partition"])
def test_unsafe_asset_and_partition_names_are_refused(store, field):
    with pytest.raises(ValueError, match=f"unsafe {field}"):
        save(store, **{field: "../../etc"})


def test_loading_a_missing_model_says_what_to_materialize(store):
    with pytest.raises(ModelNotFoundError, match=f"materialize asset '{ASSET}' for partition"):
        store.load(ASSET, DAY)

    save(store)
    with pytest.raises(ModelNotFoundError, match="version 0000000000000000"):
        store.load(ASSET, DAY, "0000000000000000")


def test_a_deleted_reference_is_reported_as_not_found(store):
    ref = save(store)
    for file in Path(ref.path).iterdir():
        file.unlink()
    Path(ref.path).rmdir()

    with pytest.raises(ModelNotFoundError, match=ASSET):
        store.load_ref(ref)


def model_with_version_below(version: str) -> dict[str, bytes]:
    for i in range(1000):
        content = f"booster {i}".encode()
        if artifact_sha256({"model.ubj": hashlib.sha256(content).hexdigest()}) < version:
            return {"model.ubj": content}
    raise AssertionError("no candidate model sorts below " + version)


def test_newest_version_is_loaded_by_default(store):
    older = save(store)
    # the newer model's version sorts before the older one's: only created_at can pick it
    newer_files = model_with_version_below(older.model_version)
    newer = save(store, files=newer_files)

    ref, files = store.load(ASSET, DAY)

    assert ref.model_version == newer.model_version < older.model_version
    assert files == newer_files
    assert store.load(ASSET, DAY, older.model_version)[1] == FILES


def test_an_interrupted_save_leaves_no_visible_version(store, monkeypatch):
    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "rename", crash)
    with pytest.raises(OSError, match="disk full"):
        save(store)
    monkeypatch.undo()

    assert versions_on_disk(store) == []
    assert store.registry().is_empty()
    with pytest.raises(ModelNotFoundError):
        store.load(ASSET, DAY)


def test_a_concurrent_save_of_the_same_model_returns_the_copy_that_landed_first(store, monkeypatch):
    real_rename = os.rename
    landed: list[StoredModel] = []

    def another_writer_finishes_first(src, dst):
        monkeypatch.setattr(os, "rename", real_rename)
        landed.append(save(store))
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", another_writer_finishes_first)
    ref = save(store)

    assert ref == landed[0]
    assert ref.manifest["created_at"] == landed[0].manifest["created_at"]
    assert versions_on_disk(store) == [ref.model_version]
    assert store.load_ref(ref) == FILES


def test_registry_lists_every_version_with_its_metrics(store):
    first = save(store)
    second = save(store, files={"state.pt": b"weights"}, manifest={"metrics": {"ic": 0.04}})
    other_day = save(store, partition="2024-03-04", manifest={"kind": "lstm", "duration_s": 1.5})

    registry = store.registry()

    assert registry.schema == pl.Schema(REGISTRY_SCHEMA)
    assert registry["model_version"].to_list() == [
        other_day.model_version,
        first.model_version,
        second.model_version,
    ]
    row = registry.row(1, named=True)
    assert json.loads(row["metrics"]) == MANIFEST["metrics"]
    assert row["duration_s"] == 12.0
    assert (row["train_start"], row["train_end"]) == ("2024-01-02", "2024-03-04")
    assert (row["kind"], row["feature_version"], row["device"]) == ("xgboost", "f3", "cpu")
    assert row["sha256"] == first.sha256 and row["path"] == first.path
    assert row["created_at"].tzinfo is not None
    assert registry.row(2, named=True)["kind"] is None
    assert registry.row(0, named=True)["metrics"] is None
    assert registry.row(0, named=True)["duration_s"] == 1.5


def test_an_empty_store_has_an_empty_registry_with_every_column(store):
    registry = store.registry()

    assert registry.is_empty()
    assert registry.schema == pl.Schema(REGISTRY_SCHEMA)
    assert registry.schema["created_at"] == pl.Datetime("us", "UTC")
    assert registry.schema["duration_s"] == pl.Float64


def test_an_asset_saves_and_loads_through_the_resource(store):
    @dg.asset(partitions_def=dg.DailyPartitionsDefinition(start_date="2024-03-01"))
    def tiny_model(context: dg.AssetExecutionContext, model_store: ModelStore) -> str:
        ref = model_store.save(
            asset="tiny_model",
            partition=context.partition_key,
            files={"model.json": b'{"w": [1, 2]}'},
            manifest={"kind": "linear", "duration_s": 0.1},
        )
        return model_store.load_ref(ref)["model.json"].decode()

    result = dg.materialize([tiny_model], partition_key=DAY, resources={"model_store": store})

    assert result.output_for_node("tiny_model") == '{"w": [1, 2]}'
    assert store.load("tiny_model", DAY)[0].manifest["kind"] == "linear"
