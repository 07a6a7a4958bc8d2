"""What a long archive costs without upkeep, and what `maintain` gives back.

    python bench/upkeep.py [--commits 20000] [--every 2000] [--max-minutes 0] [--variant NAME] [--out PATH]

Simulates a long archive with direct Committer.commit_checkpoint calls on local disk: videos of
--per-video checkpoints each (start_video, the checkpoints, finish_video), every checkpoint a
caption with its embedding (a pool of real embeddings made once: the embedder is not what is
measured), an answer, and a snapshot row naming a tiny blob written beforehand. Every --every
commits it records the commit latency (p50 of the last window), search latency (p50 of fts and
vector `vidindex.query.search` calls, the query embedding included), each table's size on disk
and version count. Then it runs vidindex.store.upkeep.maintain (versions older than
--keep-versions go: nothing else uses this database) and records the same figures afterwards,
plus --after more commits, to show them flat again.

--max-minutes stops committing early (the record says how many commits were made) and projects
the time of --commits from the measured commit latencies (linear in the commits so far).
Prints a table and records bench/results/upkeep-<date>-cpu[-variant].json (records.py).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from records import add_arguments, out_path, save  # noqa: E402

from vidindex.store.committer import COMPACT_EVERY  # noqa: E402

CONFIG_ID = "benchcfg0001"
SNAPSHOT_S = 300  # a snapshot every 5 minutes of video (the default cadence)
BLOB_BYTES = 64  # tiny: blob writing is not what is measured
POOL = 512  # distinct caption texts, embedded once
WORDS = ("person walks past red car parked near entrance while another waits by door holding bag light changes "
         "from green to red traffic slows down dog crosses street cyclist rides along harbor boat leaves pier "
         "crowd gathers square vendor sells balloons child runs rain starts falling umbrella opens").split()
TABLES = ("videos", "captions", "answers", "snapshots")


class Archive:
    """The committer of a simulated archive and its pool of caption texts with embeddings."""

    def __init__(self, root: str, per_video: int, compact_every: int, seed: int = 0):
        from vidindex.store import Committer

        self.root, self.per_video = root, per_video
        self.committer = Committer(f"{root}/db", f"{root}/db/snapshots", compact_every=compact_every or 10**12)
        self.store = self.committer.store
        rng = random.Random(seed)
        self.texts = [" ".join(rng.choice(WORDS) for _ in range(16)) for _ in range(POOL)]
        self.vectors = [v.tolist() for v in self.store.embedder.embed(self.texts)]
        self.queries = [" ".join(rng.choice(WORDS) for _ in range(3)) for _ in range(20)]
        self.commits = 0

    def commit(self) -> float:
        """The next checkpoint of the archive; returns the commit_checkpoint call's seconds."""
        from vidindex.store import write_snapshot_blob

        video, k = divmod(self.commits, self.per_video)
        video_id = f"video-{video:05d}"
        if k == 0:
            self.committer.start_video({"video_id": video_id, "config_id": CONFIG_ID, "uri": f"/archive/{video_id}.mp4",
                                        "duration_s": float(self.per_video * SNAPSHOT_S)})
        t_ms = (k + 1) * SNAPSHOT_S * 1000
        i = self.commits % POOL
        rows = {"captions": [{"video_id": video_id, "config_id": CONFIG_ID, "t_start_ms": t_ms - 30_000,
                              "t_end_ms": t_ms, "text": f"{self.texts[i]} take {self.commits}",
                              "embedding": self.vectors[i]}],
                "answers": [{"video_id": video_id, "config_id": CONFIG_ID, "question_id": "q-door", "t_ms": t_ms,
                             "question": "Is anyone at the door?", "answer": "yes, a person with a bag"}]}
        blob = write_snapshot_blob(self.committer.snapshot_root, video_id, CONFIG_ID, t_ms, os.urandom(BLOB_BYTES))
        started = time.perf_counter()
        self.committer.commit_checkpoint(video_id, CONFIG_ID, t_ms / 1000, blob, rows, frames_seen=k + 1)
        took = time.perf_counter() - started
        self.commits += 1
        if k == self.per_video - 1:
            self.committer.finish_video(video_id, CONFIG_ID, "done")
        return took

    def figures(self, commit_latencies: list[float]) -> dict:
        """Search latency, sizes and versions now."""
        from vidindex.query.search import search

        latency = {}
        for mode in ("fts", "vector"):
            search(self.store, self.queries[0], mode=mode)  # warm: caches, the query embedder
            times = []
            for query in self.queries:
                started = time.perf_counter()
                search(self.store, query, mode=mode)
                times.append(time.perf_counter() - started)
            latency[f"{mode}_ms_p50"] = 1000 * statistics.median(times)
        return {
            "commits": self.commits,
            "commit_ms_p50": 1000 * statistics.median(commit_latencies) if commit_latencies else None,
            **latency,
            "versions": {name: len(self.store.table(name).list_versions()) for name in TABLES},
            "bytes": {name: _du(f"{self.root}/db/{name}.lance") for name in TABLES},
            "captions_fragments": self.store.table("captions").stats()["fragment_stats"]["num_fragments"],
        }


def _du(path: str) -> int:
    return sum(os.path.getsize(os.path.join(folder, name)) for folder, _, names in os.walk(path) for name in names)


def _row(label: str, f: dict) -> list:
    return [label, f["commits"], _ms(f["commit_ms_p50"]), _ms(f["fts_ms_p50"]), _ms(f["vector_ms_p50"]),
            f["captions_fragments"], "/".join(str(f["versions"][t]) for t in TABLES),
            f"{sum(f['bytes'].values()) / 2**20:.1f}"]


def _ms(value) -> str:
    return "" if value is None else f"{value:.1f}"


def projected_seconds(checkpoints: list[dict], target: int) -> float | None:
    """Seconds for `target` commits, commit latency fitted as a + b * commits (least squares over
    the windows' p50s) and integrated; None with fewer than two windows."""
    points = [(c["commits"], c["commit_ms_p50"] / 1000) for c in checkpoints if c["commit_ms_p50"] is not None]
    if len(points) < 2:
        return None
    n = len(points)
    mean_x, mean_y = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    b = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)
    a = mean_y - b * mean_x
    return a * target + b * target * target / 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commits", type=int, default=20_000, help="checkpoint commits of the archive")
    parser.add_argument("--every", type=int, default=2_000, help="measure every this many commits")
    parser.add_argument("--per-video", type=int, default=100, help="checkpoints per video (100: an 8 h 20 min video)")
    parser.add_argument("--compact-every", type=int, default=COMPACT_EVERY,
                        help="the committer compacts the tables every this many commits, as in a run (0: never)")
    parser.add_argument("--after", type=int, default=200, help="commits after maintain, to show them flat")
    parser.add_argument("--keep-versions", type=float, default=1.0,
                        help="maintain's keep_versions_for, seconds (nothing else uses this database)")
    parser.add_argument("--max-minutes", type=float, default=0.0,
                        help="stop committing after this many minutes (0: never); the record says how many were made")
    parser.add_argument("--dir", help="where the archive goes (default: a temporary folder, removed)")
    add_arguments(parser)
    args = parser.parse_args()

    from vidindex.store.upkeep import maintain

    record = {"device": "cpu", "cpus": os.cpu_count(), "storage": "local disk",
              "command": "python " + " ".join(sys.argv),
              "per_commit": {"captions": 1, "answers": 1, "snapshots": 1, "blob_bytes": BLOB_BYTES,
                             "video_s": SNAPSHOT_S},
              "per_video": args.per_video, "compact_every": args.compact_every, "commits_target": args.commits, "every": args.every,
              "max_minutes": args.max_minutes, "keep_versions_for_s": args.keep_versions,
              "loadavg_start": os.getloadavg(), "checkpoints": []}
    header = ["when", "commits", "commit ms", "fts ms", "vector ms", "fragments", "versions v/c/a/s", "MiB"]
    print("  ".join(header), flush=True)
    with tempfile.TemporaryDirectory(dir=args.dir) as root:
        archive = Archive(root, args.per_video, args.compact_every)
        deadline = time.monotonic() + args.max_minutes * 60 if args.max_minutes else None
        started, window, out_of_time = time.perf_counter(), [], False
        while archive.commits < args.commits and not out_of_time:
            window.append(archive.commit())
            out_of_time = deadline is not None and time.monotonic() > deadline
            if archive.commits % args.every == 0 or archive.commits == args.commits or out_of_time:
                point = {**archive.figures(window), "elapsed_s": time.perf_counter() - started}
                record["checkpoints"].append(point)
                print("  ".join(str(c) for c in _row("growing", point)), flush=True)
                window = []
        record["commits_done"] = archive.commits
        record["loadavg_end"] = os.getloadavg()  # the machine may be shared: latencies include its load
        record["wall_s"] = time.perf_counter() - started  # commits, blob writes and the measurements
        record["projected_s"] = projected_seconds(record["checkpoints"], args.commits)

        t = time.perf_counter()
        record["maintain"] = maintain(f"{root}/db", f"{root}/db/snapshots", store=archive.store,
                                      keep_versions_for=timedelta(seconds=args.keep_versions))
        record["maintain_s"] = time.perf_counter() - t
        record["after_maintain"] = archive.figures([])
        print("  ".join(str(c) for c in _row("maintained", record["after_maintain"])), flush=True)
        window = [archive.commit() for _ in range(args.after)]
        record["after_more_commits"] = archive.figures(window)
        print("  ".join(str(c) for c in _row(f"+{args.after}", record["after_more_commits"])), flush=True)

    m = record["maintain"]
    print(f"maintain: {record['maintain_s']:.1f} s; "
          + ", ".join(f"{name} {t['versions_before']}->{t['versions_after']} versions, "
                      f"{t['bytes_before'] / 2**20:.1f}->{t['bytes_after'] / 2**20:.1f} MiB"
                      for name, t in m["tables"].items()) + (f"; errors: {m['errors']}" if m["errors"] else ""))
    if record["commits_done"] < args.commits:
        projected = record["projected_s"]
        print(f"stopped after {record['commits_done']} of {args.commits} commits ({args.max_minutes:g} min); "
              + (f"{args.commits} commits would take ~{projected / 60:.0f} min" if projected else ""))
    print(save(out_path(args, "upkeep", device="cpu"), record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
