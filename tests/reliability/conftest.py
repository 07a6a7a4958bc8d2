"""Faults put in the way of the real components: a moto S3 server (in this process) that can be
stopped, restarted and made to fail or slow its requests; a local folder as an fsspec filesystem
whose writes fail on command; the tiny model, real LanceDB and the synthetic videos of
tests/index. Runs are compared with one fault-free reference run of the same config."""

from __future__ import annotations

import errno
import logging
import threading
import time
import uuid
from dataclasses import dataclass

import fsspec
import pytest
from fsspec.implementations.local import LocalFileSystem

from tests.index.conftest import make_config, videos  # noqa: F401  (videos: a fixture)
from tests.run.tables import COMPARED
from tests.video.conftest import free_port
from vidindex.index.engine import Engine
from vidindex.store import Committer, Store, load_schema

VIDEO_NAMES = ("a", "b")  # tests/index's synthetic videos: a (25 s, snapshots at 10, 20, 25), b (17 s: 10, 17)


# ---- comparing runs


def table_rows(store: Store, table: str, video_ids=None, exact: bool = True) -> list[tuple]:
    """The COMPARED columns of `table` (of the given videos only), sorted: equal for equivalent
    runs. exact=False leaves out the blobs' sha256: a stream batched with others is not
    bit-exact with one run alone (its captions and answers are the same)."""
    columns = [c for c in COMPARED[table] if exact or c != "sha256"]
    rows = store.rows(table).select(list(columns)).to_pylist()
    return sorted(tuple(r[c] for c in columns) for r in rows if video_ids is None or r["video_id"] in video_ids)


def assert_no_duplicate_keys(store: Store) -> None:
    for table in COMPARED:
        key = list(load_schema(table).primary_key)
        rows = store.rows(table).select(key).to_pylist()
        keys = [tuple(r[k] for k in key) for r in rows]
        assert len(keys) == len(set(keys)), f"{table} holds a key twice"


def assert_every_snapshot_loads(store: Store) -> None:
    """No snapshots row without its blob: each one reads back with its size and sha256."""
    for row in store.rows("snapshots").to_pylist():
        store.load_snapshot(row)  # SnapshotIntegrityError otherwise


@dataclass
class Reference:
    """One fault-free run of videos a and b: what every faulty run must end up with."""

    db: str
    config_id: str
    video_ids: dict[str, str]  # "a", "b" -> video_id
    uris: dict[str, str]

    def store(self) -> Store:
        return Store(self.db, create=False)

    def rows(self, table: str, *names: str, exact: bool = True) -> list[tuple]:
        ids = {self.video_ids[n] for n in names or VIDEO_NAMES}
        return table_rows(self.store(), table, ids, exact)

    def blob_name(self, name: str, t_ms: int) -> str:
        """The file name of one of its snapshot blobs (<t_ms>-<sha256 prefix>.safetensors): the name
        of every run's blob of that snapshot when the video's stream runs alone."""
        [row] = [r for r in self.store().snapshots(self.video_ids[name], self.config_id) if r["t_ms"] == t_ms]
        return row["uri"].rsplit("/", 1)[-1]

    def rows_until(self, table: str, name: str, t_ms: int, exact: bool = True) -> list[tuple]:
        """The rows of one video a checkpoint at t_ms commits (captions, answers, snapshots)."""
        column = COMPARED[table].index("t_end_ms" if table == "captions" else "t_ms")
        return [row for row in self.rows(table, name, exact=exact) if row[column] <= t_ms]


@pytest.fixture(scope="session")
def reference(tmp_path_factory, tiny_checkpoint, tiny_model, videos) -> Reference:  # noqa: F811
    db = tmp_path_factory.mktemp("reference") / "db"
    config = make_config(tiny_checkpoint, db)
    results = Engine(config, model=tiny_model).index([videos[n] for n in VIDEO_NAMES])
    assert [r.status for r in results] == ["done", "done"]
    return Reference(str(db), config.config_id, {n: r.video_id for n, r in zip(VIDEO_NAMES, results)},
                     {n: videos[n] for n in VIDEO_NAMES})


def assert_same_tables(store: Store, reference: Reference, *names: str, exact: bool = True) -> None:
    ids = {reference.video_ids[n] for n in names or VIDEO_NAMES}
    for table in COMPARED:
        expected = reference.rows(table, *(names or VIDEO_NAMES), exact=exact)
        assert table_rows(store, table, ids, exact) == expected, table


# ---- S3 that can be stopped, restarted, made to fail or slow down


SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
             b'<Message>Please reduce your request rate.</Message></Error>')


class FaultyS3:
    """moto's S3 app behind a server of our own on a fixed port. stop() closes the port (clients
    get "connection refused"); start() opens it again with every object still there (moto keeps
    them in this process's memory, as a real service keeps them on disk). fail_every=n answers
    every n-th request with 503 SlowDown before it reaches S3; delay_every=n holds every n-th
    request delay_s seconds first."""

    KEY, SECRET = "reliability-key", "reliability-secret"

    def __init__(self):
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._app = DomainDispatcherApplication(create_backend_app)
        self._server = self._thread = None
        self._lock = threading.Lock()
        self.fail_every = self.delay_every = 0
        self.delay_s = 0.0
        self.requests = 0
        self.failed: list[tuple[str, str]] = []  # (method, path) of the requests answered 503
        self.delayed = 0
        self.starts = 0

    def __call__(self, environ, start_response):
        with self._lock:
            self.requests += 1
            fail = self.fail_every and self.requests % self.fail_every == 0
            slow = self.delay_every and self.requests % self.delay_every == 0
            self.delayed += bool(slow)
        if slow:
            time.sleep(self.delay_s)
        if not fail:
            return self._app(environ, start_response)
        self._drain(environ)
        self.failed.append((environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")))
        start_response("503 Slow Down", [("Content-Type", "application/xml"),
                                         ("Content-Length", str(len(SLOW_DOWN)))])
        return [SLOW_DOWN]

    @staticmethod
    def _drain(environ) -> None:
        """Read the request body we refuse, so the connection stays usable for the next one."""
        length = environ.get("CONTENT_LENGTH")
        if length:
            environ["wsgi.input"].read(int(length))
        elif environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
            environ["wsgi.input"].read()

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        from moto.moto_server.werkzeug_app import MotoRequestHandler
        from werkzeug.serving import make_server

        if self.running:
            return
        self._server = make_server("127.0.0.1", self.port, self, threaded=True, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        self.starts += 1

    def stop(self) -> None:
        if not self.running:
            return
        self._server.shutdown()
        self._server.server_close()  # the port refuses connections from now on
        self._thread.join()
        self._server = None

    def reset_faults(self) -> None:
        self.fail_every = self.delay_every = 0
        self.failed, self.delayed = [], 0

    def new_bucket(self) -> str:
        name = f"rel-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def fs_options(self, attempts: int = 10) -> dict:
        """s3fs options. Legacy retry mode: exponential backoff and no retry quota (standard mode's
        quota runs out over a run with many failed requests)."""
        return {"key": self.KEY, "secret": self.SECRET, "client_kwargs": {"endpoint_url": self.endpoint},
                "use_listings_cache": False,
                "config_kwargs": {"retries": {"max_attempts": attempts, "mode": "legacy"}, "connect_timeout": 2}}

    def lance_options(self, retries: int = 10, retry_timeout_s: int = 180) -> dict:
        """LanceDB (object_store) options; its defaults are 10 retries within 180 s."""
        return {"aws_endpoint": self.endpoint, "aws_access_key_id": self.KEY, "aws_secret_access_key": self.SECRET,
                "aws_region": "us-east-1", "allow_http": "true", "client_max_retries": str(retries),
                "client_retry_timeout": str(retry_timeout_s)}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.KEY,
                            aws_secret_access_key=self.SECRET, region_name="us-east-1")

    def objects(self, prefix: str) -> dict[str, bytes]:
        """Every object under bucket/prefix, by key (read with boto3, not through the code under test)."""
        client = self.client()
        bucket, _, key_prefix = prefix.partition("/")
        listed = client.list_objects_v2(Bucket=bucket, Prefix=key_prefix).get("Contents", [])
        return {item["Key"]: client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read() for item in listed}


@pytest.fixture(scope="session")
def s3():
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = FaultyS3()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def healthy_s3(s3):
    """The server, running and fault-free when the test starts and ends."""
    s3.reset_faults()
    s3.start()
    yield s3
    s3.reset_faults()
    s3.start()


class RetryWatch(logging.Handler):
    """Counts the retries botocore logs (legacy and standard modes); calls on_retry at the first."""

    LOGGERS = ("botocore.retryhandler", "aiobotocore.retries.standard", "botocore.retries.standard")

    def __init__(self, on_retry=None):
        super().__init__(logging.DEBUG)
        self.retries = 0
        self.on_retry = on_retry

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Retry needed"):
            self.retries += 1
            if self.retries == 1 and self.on_retry:
                self.on_retry()


@pytest.fixture
def retry_watch():
    watch = RetryWatch()
    saved = {}
    for name in RetryWatch.LOGGERS:
        logger = logging.getLogger(name)
        saved[name] = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(watch)
    yield watch
    for name, level in saved.items():
        logging.getLogger(name).removeHandler(watch)
        logging.getLogger(name).setLevel(level)


# ---- a disk whose writes fail on command


class FlakyDisk(LocalFileSystem):
    """A local folder as an fsspec filesystem, "flakydisk://<absolute path>", whose writes
    under a path that holds `fragment` fail on command (rules are class-wide: fsspec shares one
    instance):
      full      after `allowed` files, a write stores half its bytes, then ENOSPC
      readonly  after `allowed` files, opening for writing raises EACCES
      blip      the next `times` opens for writing raise ECONNRESET, then they work
    """

    protocol = ("flakydisk",)
    rules: list[dict] = []
    opened: list[str] = []  # paths opened for writing (temporary names included)

    def __init__(self, **kwargs):
        super().__init__(auto_mkdir=True, **kwargs)  # no makedirs from write_blob: not a "file" protocol

    @classmethod
    def fail(cls, fragment: str, kind: str, allowed: int = 0, times: int = 0) -> None:
        cls.rules.append({"fragment": fragment, "kind": kind, "allowed": allowed, "times": times})

    @classmethod
    def heal(cls) -> None:
        cls.rules.clear()
        cls.opened.clear()

    def _open(self, path, mode="rb", **kwargs):
        if "w" not in mode:
            return super()._open(path, mode, **kwargs)
        path = self._strip_protocol(path)
        rule = next((r for r in self.rules if r["fragment"] in path), None)
        self.opened.append(path)
        if rule is None:
            return super()._open(path, mode, **kwargs)
        if rule["kind"] == "blip":
            if rule["times"] > 0:
                rule["times"] -= 1
                raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
            return super()._open(path, mode, **kwargs)
        if rule["allowed"] > 0:
            rule["allowed"] -= 1
            return super()._open(path, mode, **kwargs)
        if rule["kind"] == "readonly":
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return _FillsUp(super()._open(path, mode, **kwargs))


class _FillsUp:
    """A file on a disk that fills up during the write: half the bytes land, then ENOSPC."""

    def __init__(self, file):
        self.file = file

    def write(self, data) -> int:
        data = memoryview(data).cast("B")
        self.file.write(data[: len(data) // 2])
        self.file.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def close(self) -> None:
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@pytest.fixture
def flaky_disk(tmp_path):
    """The root URI of a fresh folder on the flaky disk; rules are cleared before and after."""
    fsspec.register_implementation("flakydisk", FlakyDisk, clobber=True)
    FlakyDisk.heal()
    yield f"flakydisk://{tmp_path / 'snapshots'}"
    FlakyDisk.heal()


# ---- engine runs


def engine_for(config, model, *, lance_options=None, fs_options=None, on_event=None) -> Engine:
    """An engine writing through a Committer of config.db_uri (created with these options)."""
    committer = Committer(config.db_uri, config.snapshot_root, config.parquet_uri, lance_options=lance_options,
                          fs_options=fs_options)
    reader = Store(config.db_uri, create=False, lance_options=lance_options, fs_options=fs_options)
    return Engine(config, model, reader=reader, writer=committer, fs_options=fs_options, on_event=on_event)
