"""Table schemas, read from the versioned JSON files in schemas/ (the single source for LanceDB
tables and Parquet files). The package carries a copy of them as package data, in
vidindex/store/table_schemas/ (a test keeps it equal to schemas/).

Key fields carry Lance's unenforced-primary-key field metadata (with their position in the
composite key): merge_insert upserts match on them, and concurrent merge_insert of new keys was
seen to duplicate rows without it. Lance accepts only string and integer key columns, which is
why every time column is integer milliseconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

import pyarrow as pa

TABLE_NAMES = ("videos", "captions", "answers", "snapshots")
# The packaged copy of schemas/*.json (a Traversable: a folder, or a place inside a zip).
SCHEMA_FILES = files("vidindex.store") / "table_schemas"

PRIMARY_KEY = "lance-schema:unenforced-primary-key"
PRIMARY_KEY_POSITION = "lance-schema:unenforced-primary-key:position"
VERSION_KEY = "vidindex.schema_version"
TABLE_KEY = "vidindex.table"

_SCALAR_TYPES = {
    "string": pa.string(),
    "bool": pa.bool_(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "binary": pa.binary(),
    "timestamp[us, UTC]": pa.timestamp("us", tz="UTC"),
}


@dataclass(frozen=True)
class TableSchema:
    name: str
    version: int
    primary_key: tuple[str, ...]
    fields: tuple[dict, ...]
    description: str = ""

    def arrow(self, embedding_dim: int | None = None) -> pa.Schema:
        """The Arrow schema; `embedding_dim` sizes fixed-size-list fields declared with size "embedding_dim"."""
        arrow_fields = []
        for spec in self.fields:
            metadata = {"doc": spec.get("doc", "")}
            if spec["name"] in self.primary_key:
                metadata[PRIMARY_KEY] = "true"
                metadata[PRIMARY_KEY_POSITION] = str(self.primary_key.index(spec["name"]) + 1)
            arrow_type = _arrow_type(self.name, spec, embedding_dim)
            arrow_fields.append(pa.field(spec["name"], arrow_type, nullable=spec["nullable"], metadata=metadata))
        return pa.schema(arrow_fields, metadata={VERSION_KEY: str(self.version), TABLE_KEY: self.name})

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(spec["name"] for spec in self.fields)

    @property
    def needs_embedding_dim(self) -> bool:
        return any(spec.get("size") == "embedding_dim" for spec in self.fields)

    def allowed_values(self) -> dict[str, tuple]:
        return {spec["name"]: tuple(spec["allowed"]) for spec in self.fields if "allowed" in spec}


def _arrow_type(table: str, spec: dict, embedding_dim: int | None) -> pa.DataType:
    type_name = spec["type"]
    if type_name in _SCALAR_TYPES:
        return _SCALAR_TYPES[type_name]
    if type_name.startswith("fixed_size_list<") and type_name.endswith(">"):
        size = spec.get("size")
        if size == "embedding_dim":
            if not embedding_dim:
                raise ValueError(f"schemas/{table}.json field {spec['name']!r} needs embedding_dim")
            size = embedding_dim
        return pa.list_(_SCALAR_TYPES[type_name[len("fixed_size_list<"):-1]], int(size))
    raise ValueError(f"schemas/{table}.json field {spec['name']!r}: unknown type {type_name!r}")


@lru_cache(maxsize=None)
def load_schema(table: str) -> TableSchema:
    """The schema of `table` from schemas/<table>.json (its packaged copy)."""
    if table not in TABLE_NAMES:
        raise ValueError(f"unknown table {table!r}; tables are {', '.join(TABLE_NAMES)}")
    path = SCHEMA_FILES / f"{table}.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    schema = TableSchema(
        name=data["table"],
        version=int(data["version"]),
        primary_key=tuple(data["primary_key"]),
        fields=tuple(data["fields"]),
        description=data.get("description", ""),
    )
    missing_keys = set(schema.primary_key) - set(schema.field_names)
    if schema.name != table or missing_keys:
        raise ValueError(f"{path}: table name or primary key does not match its fields ({sorted(missing_keys)})")
    schema.arrow(embedding_dim=1)  # fail now on a typo in a type name
    return schema
