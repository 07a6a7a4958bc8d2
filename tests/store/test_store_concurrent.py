"""Two processes creating the same new database at the same moment (two index runs started
together): both get the same tables, neither crashes on "table already exists"."""

from __future__ import annotations

import multiprocessing as mp

ATTEMPTS = 3  # the race is timing-dependent: each attempt is a new database, created by both at once


def _create(paths: list[str], barrier, results) -> None:
    from vidindex.store import Store  # imported before the barrier: the race is on creation only

    for path in paths:
        barrier.wait(timeout=120)
        try:
            store = Store(path, create=True)
            results.put(("ok", sorted(store.table("captions").schema.names)))
        except Exception as error:  # noqa: BLE001 - reported to the test
            results.put(("error", f"{type(error).__name__}: {error}"))


def test_two_processes_create_one_database(tmp_path):
    ctx = mp.get_context("spawn")
    paths = [str(tmp_path / f"db{i}") for i in range(ATTEMPTS)]
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_create, args=(paths, barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=180) for _ in range(2 * ATTEMPTS)]
    for p in procs:
        p.join(timeout=60)
    assert all(kind == "ok" for kind, _ in outcomes), outcomes
    assert len({tuple(columns) for _, columns in outcomes}) == 1

    from vidindex.store import Store

    for path in paths:
        captions = Store(path, create=False).table("captions")
        assert [index.columns for index in captions.list_indices()] == [["text"]]
