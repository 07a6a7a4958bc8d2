"""Storage errors. Each names the URI (and table) involved, so a failed job says where."""


class StoreError(RuntimeError):
    """A read or write of the index failed; rows were not written."""


class SchemaVersionError(StoreError):
    """A table was written with a schema version this vidindex does not read or write."""


class SnapshotIntegrityError(StoreError):
    """A snapshot blob is missing, or its size or sha256 differs from its snapshots row."""
