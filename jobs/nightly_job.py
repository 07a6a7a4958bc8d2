"""Ray job entrypoint: the nightly incremental run, with the flags of `vidindex index` plus a run lock.

    ray job submit -- python jobs/nightly_job.py s3://bucket/archive/ --db s3://bucket/index/db [--lock URI]

Every run indexes what is new since the last one: done videos are skipped, partial ones resume
from their last snapshot, failed ones are tried again. A lock file (default
<db>/_vidindex/nightly.lock) keeps two runs from overlapping: a run that finds the lock held
exits 0 without indexing. A lock older than --lock-ttl-hours is taken to be left by a crashed
run and taken over. The report of the last run is written beside the lock (last_run.json).
`ray job stop` (SIGTERM) ends the run cleanly: exit code 143 in last_run.json, the lock released;
a SIGKILL (3 s after the SIGTERM unless RAY_JOB_STOP_WAIT_TIME_S says more, see index_job.py)
leaves the lock until --lock-ttl-hours.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
import uuid
from datetime import datetime, timezone

import fsspec

from vidindex.cli.main import main as cli_main

DEFAULT_TTL_HOURS = 24.0


class RunLock:
    """An exclusive lock file at `uri` (local path or fsspec URI)."""

    def __init__(self, uri: str, ttl_hours: float = DEFAULT_TTL_HOURS):
        self.uri = uri
        self.ttl_s = ttl_hours * 3600
        self.fs, self.path = fsspec.core.url_to_fs(uri)
        self.token = {"run": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(),
                      "started_at": datetime.now(timezone.utc).isoformat(), "time": time.time()}

    def holder(self) -> dict | None:
        try:
            return json.loads(self.fs.cat_file(self.path))
        except FileNotFoundError:
            return None
        except ValueError:  # half-written: treat as held until its age says otherwise
            return {"run": "?", "time": self.fs.modified(self.path).timestamp()}

    def acquire(self) -> bool:
        current = self.holder()
        if current is not None and time.time() - float(current.get("time", 0)) < self.ttl_s:
            return False
        if current is not None:
            self.fs.rm(self.path)  # stale: its run died without releasing
        self.fs.makedirs(self.path.rsplit("/", 1)[0], exist_ok=True)
        data = json.dumps(self.token).encode()
        if self._is_local():
            try:  # atomic create on a local or network file system
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return True
        # Object stores: write, then read back; of two racing writers only one sees its own token.
        self.fs.pipe_file(self.path, data)
        time.sleep(1.0)
        return (self.holder() or {}).get("run") == self.token["run"]

    def release(self) -> None:
        if (self.holder() or {}).get("run") == self.token["run"]:
            self.fs.rm(self.path)

    def _is_local(self) -> bool:
        protocol = self.fs.protocol
        return "file" in (protocol if isinstance(protocol, (list, tuple)) else (protocol,))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nightly_job.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="LanceDB database URI (as for vidindex index)")
    parser.add_argument("--lock", help="lock file URI (default: <db>/_vidindex/nightly.lock)")
    parser.add_argument("--lock-ttl-hours", type=float, default=DEFAULT_TTL_HOURS,
                        help="a lock older than this is stale (default 24)")
    args, index_args = parser.parse_known_args(argv)
    lock_uri = args.lock or args.db.rstrip("/") + "/_vidindex/nightly.lock"
    lock = RunLock(lock_uri, args.lock_ttl_hours)
    if not lock.acquire():
        holder = lock.holder() or {}
        print(f"another nightly run holds {lock_uri} (run {holder.get('run')} on {holder.get('host')}, "
              f"started {holder.get('started_at')}): not starting", file=sys.stderr)
        return 0
    try:
        report_uri = lock_uri.rsplit("/", 1)[0] + "/last_run.json"
        code = cli_main(["index", *index_args, "--db", args.db, "--no-progress"])
        with fsspec.open(report_uri, "w") as f:
            json.dump({**lock.token, "finished_at": datetime.now(timezone.utc).isoformat(), "exit_code": code}, f)
        return code
    finally:
        lock.release()


if __name__ == "__main__":
    sys.exit(main())
