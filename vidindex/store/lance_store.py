"""Store: the four vidindex tables in one LanceDB database, with keyed upserts, the reads that
indexing and resume need, and the captions indexes (search itself is vidindex.query.search).

Writes should go through a Committer (vidindex.store.committer), which serializes them: LanceDB
merge_insert races under concurrent writers.

Two committers on one database (two runs at once) are safe, each write being one keyed LanceDB
commit: Lance sees two concurrent upserts of one new key through the key columns' primary-key
metadata (vidindex.store.schemas) and redoes the later one, and an update changes only its
columns. A commit conflict that Lance raises as retryable is tried again here
(_retrying_conflicts); a compaction beside another process's upserts meets one often
(tests/reliability/test_concurrent_runs.py).
"""

from __future__ import annotations

import logging
import math
import random
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterable, Iterator

import lancedb
import pyarrow as pa

from vidindex.store.blobs import read_blob
from vidindex.store.embeddings import TextEmbedder, get_embedder
from vidindex.store.errors import SchemaVersionError, SnapshotIntegrityError, StoreError
from vidindex.store.schemas import TABLE_NAMES, VERSION_KEY, load_schema

# LanceDB's caches, bounded: by default they keep every version's metadata a long-lived writer
# reads, so a run's committer grew ~1.5 MB per video (bench/load_videos.py, 200 videos); with
# these bounds it stays flat. The index cache serves searches (the captions' indexes).
METADATA_CACHE_BYTES = 64 * 1024 * 1024
INDEX_CACHE_BYTES = 512 * 1024 * 1024
from vidindex.store.sql import and_clauses, eq
from vidindex.video.redact import redact_uri, scrub_secrets

log = logging.getLogger(__name__)

EMBEDDING_MODEL_KEY = "vidindex.embedding_model"
# Below this many captions the vector search is an exact scan (a few ms); an IVF_PQ index needs
# enough rows to train its 256-entry codebooks and sqrt(n) partitions well.
VECTOR_INDEX_MIN_ROWS = 4096

Rows = "list[dict[str, Any]] | pa.Table"
# Lance's commit conflicts reach Python as RuntimeError, told apart by their text: another
# writer committed first and this commit can be redone ("Retryable commit conflict for version
# N: ... Please retry."), or Lance's own retries ran out ("Too many concurrent writers" /
# "writes"). A keyed upsert, a column update and a compaction are all safe to run again.
RETRYABLE_CONFLICTS = ("Retryable commit conflict", "Too many concurrent writ")
CONFLICT_RETRY_DELAYS_S = (0.1, 0.5, 2.0)  # before the 2nd, 3rd, 4th attempt (jittered: two writers part)
# Text columns that may quote a URI given by a user: credentials in it never reach a table (nor
# the Parquet copy made from the tables). A URI that needs them to open will not open from a
# row: credentials belong in the environment or fs_options.
REDACTED_COLUMNS = {"videos": ("uri", "error", "config"), "snapshots": ("uri",)}


class Store:
    """The tables at `db_uri` (local path, or an object-store URI passed through to LanceDB)."""

    def __init__(
        self,
        db_uri: str | Path,
        *,
        create: bool = True,
        embedding_model: str | None = None,
        embedder: TextEmbedder | None = None,
        lance_options: dict[str, str] | None = None,
        fs_options: dict | None = None,
    ):
        self._given_uri = str(db_uri)  # to connect with; messages and callers see self.uri
        self.uri = redact_uri(self._given_uri)
        self.fs_options = fs_options
        self._embedder = embedder
        if not create and "://" not in self.uri and not Path(self.uri).is_dir():
            raise StoreError(f"no vidindex database at {self.uri}: the directory does not exist")
        with self._failing_loudly("connect to"):
            # read_consistency_interval=0: every read sees the latest commit, also other processes'.
            self._db = lancedb.connect(self._given_uri, storage_options=lance_options,
                                       read_consistency_interval=timedelta(0), session=lancedb.Session(
                                           index_cache_size_bytes=INDEX_CACHE_BYTES,
                                           metadata_cache_size_bytes=METADATA_CACHE_BYTES))
        self._tables: dict[str, Any] = {}
        self._arrow: dict[str, pa.Schema] = {}
        for name in TABLE_NAMES:
            self._open_table(name, create, embedding_model)

    # ---- opening

    def _open_table(self, name: str, create: bool, embedding_model: str | None) -> None:
        schema = load_schema(name)
        try:
            table = self._db.open_table(name)
        except ValueError:  # LanceDB: "Table '<name>' was not found"
            table = None
        except Exception as error:
            raise self._error(f"cannot open table {name!r} at {self.uri}", error)
        if table is None:
            if not create:
                raise StoreError(f"no vidindex database at {self.uri}: table {name!r} not found")
            arrow = self._new_schema(name, embedding_model)
            with self._failing_loudly(f"create table {name!r} in"):
                # exist_ok: another run creating the same new database at the same moment wins
                # the race, and this one opens its table (its schema is checked below).
                table = self._db.create_table(name, schema=arrow, exist_ok=True)
                if name == "captions":
                    _ensure_text_index(table)
        self._check_version(name, table.schema, schema.version)
        self._tables[name] = table
        self._arrow[name] = table.schema
        if name == "captions":
            self.embedding_model = _metadata(table.schema, EMBEDDING_MODEL_KEY)
            if embedding_model and embedding_model != self.embedding_model:
                raise StoreError(
                    f"captions at {self.uri} hold embeddings of {self.embedding_model!r}, not {embedding_model!r}; "
                    "use that model or a new database"
                )

    def _new_schema(self, name: str, embedding_model: str | None) -> pa.Schema:
        schema = load_schema(name)
        if not schema.needs_embedding_dim:
            return schema.arrow()
        embedder = self._embedder_for(embedding_model)
        arrow = schema.arrow(embedding_dim=embedder.dim)
        return arrow.with_metadata({**arrow.metadata, EMBEDDING_MODEL_KEY.encode(): embedder.model_name.encode()})

    def _check_version(self, name: str, arrow: pa.Schema, expected: int) -> None:
        found = _metadata(arrow, VERSION_KEY)
        where = f"table {name!r} at {self.uri}"
        if found is None:
            raise SchemaVersionError(f"{where} has no vidindex schema version: it was not written by vidindex")
        if int(found) < expected:
            raise SchemaVersionError(
                f"{where} was written with schema version {found}, but this vidindex uses version {expected} "
                f"(schemas/{name}.json): index into a new database, or migrate this one"
            )
        if int(found) > expected:
            raise SchemaVersionError(
                f"{where} was written with schema version {found}, newer than this vidindex's {expected}: upgrade vidindex"
            )

    def _embedder_for(self, model_name: str | None = None) -> TextEmbedder:
        if self._embedder is None:
            from vidindex.config import DEFAULT_EMBEDDING_MODEL

            self._embedder = get_embedder(model_name or getattr(self, "embedding_model", None) or DEFAULT_EMBEDDING_MODEL)
        return self._embedder

    @property
    def embedder(self) -> TextEmbedder:
        embedder = self._embedder_for(self.embedding_model)
        if embedder.model_name != self.embedding_model:
            raise StoreError(
                f"captions at {self.uri} hold embeddings of {self.embedding_model!r}, "
                f"but the embedder is {embedder.model_name!r}"
            )
        return embedder

    def table(self, name: str):
        """The LanceDB table, for reads this class does not cover."""
        if name not in self._tables:
            raise StoreError(f"unknown table {name!r}; tables are {', '.join(TABLE_NAMES)}")
        return self._tables[name]

    def arrow_schema(self, name: str) -> pa.Schema:
        self.table(name)
        return self._arrow[name]

    # ---- writing

    def upsert(self, table: str, rows: Rows) -> int:
        """Insert rows, replacing rows with the same key; returns how many rows were given.

        Rows must use the table's column names (schemas/<table>.json). Captions without an
        embedding get one from the store's embedder. Within one call the last row of a key wins.
        """
        data = self.prepare_rows(table, rows)
        if data.num_rows == 0:
            return 0
        key = list(load_schema(table).primary_key)
        with self._failing_loudly(f"upsert {data.num_rows} rows into {table!r} at", table):
            self._retrying_conflicts(f"upsert into {table!r}", lambda: self.table(table).merge_insert(key)
                                     .when_matched_update_all().when_not_matched_insert_all().execute(data))
        return data.num_rows

    def update_video(self, video_id: str, config_id: str, values: dict[str, Any]) -> None:
        """Set some columns of an existing videos row, leaving the others as stored. One keyed
        merge_insert of just these columns, no read first: a whole row read, changed and written
        back would put back the older values of another run writing the same row meanwhile."""
        if {"video_id", "config_id"} & set(values):
            raise StoreError("update_video cannot change a row's key (video_id, config_id)")
        data = self.prepare_rows("videos", [{"video_id": video_id, "config_id": config_id, **values}], partial=True)
        with self._failing_loudly("update a row of 'videos' at", "videos"):
            result = self._retrying_conflicts("update of 'videos'", lambda: self.table("videos").merge_insert(
                ["video_id", "config_id"]).when_matched_update_all().execute(data))
        if not result.num_updated_rows:
            raise StoreError(f"no videos row for video {video_id!r}, config {config_id!r} at {self.uri}")

    def optimize(self, table: str, **options: Any) -> None:
        """LanceDB's optimize of one table (compaction, index updates, old versions removed with
        cleanup_older_than), tried again when another writer's commit preempts it."""
        self._retrying_conflicts(f"optimize of {table!r}", lambda: self.table(table).optimize(**options))

    def _retrying_conflicts(self, action: str, attempt):
        """attempt(), tried again after CONFLICT_RETRY_DELAYS_S while it fails with a commit conflict
        that LanceDB calls retryable (another process committed to the table first)."""
        for delay in (*CONFLICT_RETRY_DELAYS_S, None):
            try:
                return attempt()
            except RuntimeError as error:
                if delay is None or not any(text in str(error) for text in RETRYABLE_CONFLICTS):
                    raise
                delay *= 0.5 + random.random()
                log.info("%s at %s: another writer committed first (%s); trying again in %.1f s", action, self.uri,
                         scrub_secrets(str(error).split(",")[0], self._given_uri), delay)
                time.sleep(delay)

    def prepare_rows(self, table: str, rows: Rows, partial: bool = False) -> pa.Table:
        """Validated rows as an Arrow table of the table's schema, deduplicated by key.
        partial=True: rows that all give the key and the same other columns (an update of just
        those), as a table of only these columns."""
        arrow = self.arrow_schema(table)
        schema = load_schema(table)
        records = rows.to_pylist() if isinstance(rows, (pa.Table, pa.RecordBatch)) else list(rows)
        names = set(schema.field_names)
        for record in records:
            unknown = set(record) - names
            if unknown:
                raise StoreError(f"{table}: unknown column(s) {sorted(unknown)}; columns are {list(schema.field_names)}")
        if partial:
            arrow = self._partial_schema(table, arrow, records)
        elif table == "captions":
            self._fill_embeddings(records)
        for spec in schema.fields:
            if not spec["nullable"] and spec["name"] in arrow.names:
                for record in records:
                    if record.get(spec["name"]) is None:
                        key = {k: record.get(k) for k in schema.primary_key}
                        raise StoreError(f"{table}: column {spec['name']!r} is required, missing in row {key}")
        _check_allowed(table, records)
        for column in REDACTED_COLUMNS.get(table, ()):
            for i, record in enumerate(records):
                if isinstance(record.get(column), str):
                    clean = redact_uri(record[column]) if column == "uri" else scrub_secrets(record[column])
                    if clean != record[column]:
                        records[i] = {**record, column: clean}
        # merge_insert inserts every source row whose key is new, even twice: keep the last one.
        by_key = {tuple(record[k] for k in schema.primary_key): record for record in records}
        try:
            return pa.Table.from_pylist(list(by_key.values()), schema=arrow)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as error:
            raise StoreError(f"{table}: rows do not match schemas/{table}.json: {error}") from error

    @staticmethod
    def _partial_schema(table: str, arrow: pa.Schema, records: list[dict]) -> pa.Schema:
        given = set(records[0]) if records else set()
        if any(set(record) != given for record in records):
            raise StoreError(f"{table}: the rows of one update must give the same columns")
        missing = [name for name in load_schema(table).primary_key if name not in given]
        if missing:
            raise StoreError(f"{table}: an update needs the key; {missing} missing")
        return pa.schema([field for field in arrow if field.name in given], metadata=arrow.metadata)

    def _fill_embeddings(self, records: list[dict]) -> None:
        missing = [record for record in records if record.get("embedding") is None]
        if not missing:
            return
        for record in missing:
            if not isinstance(record.get("text"), str):
                raise StoreError(f"captions: row at t_end_ms={record.get('t_end_ms')} has no text to embed")
        vectors = self.embedder.embed([record["text"] for record in missing])
        for record, vector in zip(missing, vectors):
            record["embedding"] = vector.tolist()

    # ---- reading

    def count(self, table: str, where: str | None = None) -> int:
        with self._failing_loudly(f"count rows of {table!r} at", table):
            return self.table(table).count_rows(where)

    def rows(self, table: str, *, video_id: str | None = None, config_id: str | None = None, where: str | None = None) -> pa.Table:
        """Rows of `table`, optionally of one video/config and matching an SQL `where`."""
        where = and_clauses(eq("video_id", video_id), eq("config_id", config_id), where)
        with self._failing_loudly(f"read {table!r} at", table):  # search() already reads (the latest version)
            query = self.table(table).search().limit(None)
            if where:
                query = query.where(where)
            return query.to_arrow()

    def get_video(self, video_id: str, config_id: str) -> dict | None:
        found = self.rows("videos", video_id=video_id, config_id=config_id).to_pylist()
        return found[0] if found else None

    def videos(self, *, status: str | None = None, config_id: str | None = None) -> list[dict]:
        return self.rows("videos", config_id=config_id, where=eq("status", status)).to_pylist()

    def done_video_ids(self, config_id: str) -> set[str]:
        """Videos finished under `config_id`: a run with that config skips them."""
        return {row["video_id"] for row in self.videos(status="done", config_id=config_id)}

    def snapshots(self, video_id: str, config_id: str) -> list[dict]:
        """Committed snapshots of one stream, oldest first."""
        rows = self.rows("snapshots", video_id=video_id, config_id=config_id).to_pylist()
        return sorted(rows, key=lambda row: row["t_ms"])

    def latest_snapshot(self, video_id: str, config_id: str) -> dict | None:
        """The newest committed snapshots row (its blob and all rows up to t_ms were committed first)."""
        snapshots = self.snapshots(video_id, config_id)
        return snapshots[-1] if snapshots else None

    def load_snapshot(self, row: dict, verify: bool = True) -> bytes:
        """The blob of a snapshots row, verified against the row's size and sha256 (verify=False:
        the size only; the caller checks row["sha256"])."""
        return read_blob(row["uri"], row["bytes"], row["sha256"], self.fs_options, verify=verify)

    def latest_loadable_snapshot(self, video_id: str, config_id: str) -> tuple[dict, bytes] | None:
        """The newest snapshot whose blob verifies, with its bytes: where a resume starts.

        A blob lost or damaged after its commit is skipped for the one before it (the rows after an
        older snapshot are simply recomputed and upserted again).
        """
        for row in reversed(self.snapshots(video_id, config_id)):
            try:
                return row, self.load_snapshot(row)
            except SnapshotIntegrityError as error:
                log.warning("video %s: %s; falling back to the snapshot before it", video_id, error)
        return None

    def ensure_indexes(self, vector_min_rows: int = VECTOR_INDEX_MIN_ROWS) -> dict[str, str]:
        """Create the captions full-text index, and the vector index once there are
        `vector_min_rows` captions; fold new rows into existing indexes. Returns what it did.

        Unindexed rows are still found (searched exhaustively), so this is for speed, not
        correctness: call it after a batch of videos, not per checkpoint.
        """
        from lancedb.index import FTS, IvfPq

        table = self.table("captions")
        done: dict[str, str] = {}
        with self._failing_loudly("index captions at", "captions"):
            indexed = {tuple(index.columns): index for index in table.list_indices()}
            rows = table.count_rows()
            if ("text",) not in indexed:
                table.create_index("text", config=FTS(with_position=True))  # positions: "quoted phrase" queries
                done["text"] = "created full-text index"
            elif not _phrase_search_works(table):  # a database indexed before word positions were kept
                table.create_index("text", config=FTS(with_position=True), replace=True)
                done["text"] = "rebuilt full-text index with word positions (for phrase search)"
            if ("embedding",) not in indexed and rows >= vector_min_rows:
                partitions = max(1, int(math.sqrt(rows)))
                table.create_index("embedding", config=IvfPq(distance_type="cosine", num_partitions=partitions))
                done["embedding"] = f"created IVF_PQ vector index ({partitions} partitions)"
            stale = [i.name for i in indexed.values() if table.index_stats(i.name).num_unindexed_rows]
            if stale:
                self.optimize("captions")
                done["optimize"] = f"added new rows to {', '.join(stale)}"
        return done

    # ---- errors

    @contextmanager
    def _failing_loudly(self, action: str, table: str | None = None) -> Iterator[None]:
        """Re-raise any storage failure as StoreError naming the action and the URI."""
        try:
            yield
        except StoreError:
            raise
        except Exception as error:
            where = f"{self.uri}/{table}" if table else self.uri
            raise self._error(f"cannot {action} {where}: {type(error).__name__}", error)

    def _error(self, message: str, error: BaseException) -> StoreError:
        """StoreError("<message>: <the error's text>") without the credentials of the URI given
        (LanceDB may quote it); the error stays attached as the cause unless its text holds them."""
        text = scrub_secrets(str(error), self._given_uri)
        failure = StoreError(f"{message}: {text}")
        failure.__cause__ = error if text == str(error) else None
        failure.__suppress_context__ = True
        return failure


def _metadata(arrow: pa.Schema, key: str) -> str | None:
    value = (arrow.metadata or {}).get(key.encode())
    return value.decode() if value is not None else None


def _check_allowed(table: str, records: Iterable[dict]) -> None:
    for column, allowed in load_schema(table).allowed_values().items():
        for record in records:
            if column in record and record[column] not in allowed:
                raise StoreError(f"{table}: {column} must be one of {', '.join(allowed)}, got {record[column]!r}")


def _phrase_search_works(captions) -> bool:
    try:
        captions.search('"phrase probe"', query_type="fts").limit(1).to_list()
    except Exception as error:  # noqa: BLE001 - only this answer is expected; others show in real searches
        return "position" not in str(error)
    return True


def _ensure_text_index(captions) -> None:
    """Full-text search needs an index to exist; rows added later are searched exhaustively
    until ensure_indexes folds them in. Two runs creating a database at once may both get here:
    losing that race is fine when the other one's index is there."""
    from lancedb.index import FTS

    def has_index() -> bool:
        return any("text" in index.columns for index in captions.list_indices())

    if has_index():
        return
    try:
        captions.create_index("text", config=FTS(with_position=True))  # positions: "quoted phrase" queries
    except Exception:
        captions.checkout_latest()
        if not has_index():
            raise
