"""vidindex storage: the videos, captions, answers and snapshots tables (LanceDB), snapshot blobs
(fsspec) and the Parquet copy. Schemas come from schemas/*.json; see docs/storage.md."""

from vidindex.store.blobs import BlobInfo, read_blob, snapshot_blob_uri, write_blob, write_snapshot_blob
from vidindex.store.committer import Committer
from vidindex.store.embeddings import TextEmbedder, get_embedder
from vidindex.store.errors import SchemaVersionError, SnapshotIntegrityError, StoreError
from vidindex.store.lance_store import VECTOR_INDEX_MIN_ROWS, Store
from vidindex.store.parquet import ParquetExporter, parquet_glob
from vidindex.store.schemas import TABLE_NAMES, TableSchema, load_schema

__all__ = [
    "BlobInfo", "Committer", "ParquetExporter", "SchemaVersionError", "SnapshotIntegrityError", "Store",
    "StoreError", "TABLE_NAMES", "TableSchema", "TextEmbedder", "VECTOR_INDEX_MIN_ROWS", "get_embedder",
    "load_schema", "parquet_glob", "read_blob", "snapshot_blob_uri", "write_blob", "write_snapshot_blob",
]
