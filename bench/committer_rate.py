"""What one committer sustains: checkpoint commits per second, in process and through its Ray actor.

    python bench/committer_rate.py [--commits 60] [--clients 1,4,8] [--variant NAME] [--out PATH]

Each commit is what an indexing actor sends at a snapshot of the default cadence (snapshots every
300 s, captions every 30 s): 10 captions of 32 words (embedded by the committer, as in a run)
and, with --answers, that many answers, plus the uri/size/sha256 of a blob of the tiny model's
state size, written beforehand (the actors write blobs; timing leaves that out). Measures:
  - the Committer called in this process, one commit after another, and the part of a commit
    that is embedding its captions;
  - the committer actor (vidindex.run.pipeline's options) driven through CommitterProxy by N CPU
    actors at once, each committing its own videos: commits/s over all, and each call's latency.
Local disk (a temporary folder). Prints and records (bench/results/committer_rate-<date>-cpu.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from records import add_arguments, out_path, save  # noqa: E402

CONFIG_ID = "benchcfg0001"
BLOB_BYTES = 42_784  # the tiny model's state (a snapshot row of the test runs)
WORDS = ("a person walks past the red car parked near the entrance while another waits by the door "
         "holding a bag and the light changes from green to red as traffic slows down").split()


def commit_args(video_id: str, k: int, snapshot_root: str, captions: int, answers: int, interval_s: int) -> tuple:
    """Arguments of commit_checkpoint for the k-th snapshot of a video; its blob written beforehand."""
    from vidindex.store import write_snapshot_blob

    t_ms = (k + 1) * interval_s * 1000
    step = interval_s * 1000 // captions
    rows = {"captions": [{"video_id": video_id, "config_id": CONFIG_ID, "t_start_ms": t_ms - interval_s * 1000 + i * step,
                          "t_end_ms": t_ms - interval_s * 1000 + (i + 1) * step,
                          "text": " ".join(WORDS[(k + i + j) % len(WORDS)] for j in range(32))}
                         for i in range(captions)]}
    if answers:
        rows["answers"] = [{"video_id": video_id, "config_id": CONFIG_ID, "question_id": f"q{i}", "t_ms": t_ms,
                            "question": "Is anyone at the door?", "answer": "yes, a person with a bag"}
                           for i in range(answers)]
    blob = write_snapshot_blob(snapshot_root, video_id, CONFIG_ID, t_ms, os.urandom(BLOB_BYTES))
    return video_id, CONFIG_ID, t_ms / 1000, blob, rows


def video_row(video_id: str) -> dict:
    return {"video_id": video_id, "config_id": CONFIG_ID, "uri": f"/videos/{video_id}.mp4", "duration_s": 3600.0}


class Client:
    """A CPU actor standing for an indexing actor: commits its videos' snapshots through the proxy."""

    def __init__(self, committer):
        from vidindex.run.pipeline import CommitterProxy

        self.proxy = CommitterProxy(committer)

    def prepare(self, video_ids, commits_each, snapshot_root, captions, answers, interval_s):
        for video_id in video_ids:
            self.proxy.start_video(video_row(video_id))
        self.todo = [commit_args(v, k, snapshot_root, captions, answers, interval_s)
                     for k in range(commits_each) for v in video_ids]

    def run(self) -> list[float]:
        latencies = []
        for args in self.todo:
            started = time.perf_counter()
            self.proxy.commit_checkpoint(*args, frames_seen=int(args[2]))
            latencies.append(time.perf_counter() - started)
        return latencies


def summary(latencies: list[float], wall: float, captions: int) -> dict:
    latencies = sorted(latencies)
    return {"commits": len(latencies), "wall_s": wall, "commits_per_s": len(latencies) / wall,
            "captions_per_s": len(latencies) * captions / wall,
            "latency_s_p50": statistics.median(latencies),
            "latency_s_p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]}


def in_process(root: str, commits: int, captions: int, answers: int, interval_s: int) -> dict:
    from vidindex.store import Committer

    committer = Committer(f"{root}/db", f"{root}/snapshots")
    committer.start_video(video_row("warm-up"))
    committer.commit_checkpoint(*commit_args("warm-up", 0, f"{root}/snapshots", captions, answers, interval_s),
                                frames_seen=1)  # loads the embedder
    video_ids = [f"video-{i}" for i in range(4)]
    for video_id in video_ids:
        committer.start_video(video_row(video_id))
    todo = [commit_args(video_ids[k % 4], k // 4, f"{root}/snapshots", captions, answers, interval_s)
            for k in range(commits)]
    latencies, started = [], time.perf_counter()
    for args in todo:
        t = time.perf_counter()
        committer.commit_checkpoint(*args, frames_seen=int(args[2]))
        latencies.append(time.perf_counter() - t)
    result = summary(latencies, time.perf_counter() - started, captions)
    t = time.perf_counter()
    for args in todo:  # the share of a commit that is embedding its captions (the commit filled them in)
        committer.store.prepare_rows("captions", [{**row, "embedding": None} for row in args[4]["captions"]])
    result["embed_s_per_commit"] = (time.perf_counter() - t) / len(todo)
    return result


def through_ray(root: str, clients: int, commits: int, captions: int, answers: int, interval_s: int) -> dict:
    import ray

    from vidindex.run.ray import COMMITTER_OPTIONS
    from vidindex.store import Committer

    committer = ray.remote(Committer).options(**COMMITTER_OPTIONS).remote(f"{root}/db", f"{root}/snapshots")
    remote_client = ray.remote(num_cpus=0)(Client)
    actors = [remote_client.remote(committer) for _ in range(clients)]
    warm = actors[0]
    ray.get(warm.prepare.remote(["warm-up"], 1, f"{root}/snapshots", captions, answers, interval_s))
    ray.get(warm.run.remote())  # loads the embedder in the committer
    each = max(1, commits // clients)
    ray.get([a.prepare.remote([f"c{i}-video-{j}" for j in range(2)], (each + 1) // 2, f"{root}/snapshots",
                              captions, answers, interval_s) for i, a in enumerate(actors)])
    started = time.perf_counter()
    latencies = [x for part in ray.get([a.run.remote() for a in actors]) for x in part]
    result = summary(latencies, time.perf_counter() - started, captions)
    for actor in actors + [committer]:
        ray.kill(actor)
    return {"clients": clients, **result}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commits", type=int, default=60, help="commits per measurement")
    parser.add_argument("--clients", default="1,4,8", help="numbers of client actors, comma-separated")
    parser.add_argument("--captions", type=int, default=10, help="captions per commit (300 s / 30 s)")
    parser.add_argument("--answers", type=int, default=0, help="answers per commit")
    parser.add_argument("--interval", type=int, default=300, help="seconds of video between snapshots")
    add_arguments(parser)
    args = parser.parse_args()

    from vidindex.run.ray import ray_session

    record = {"device": "cpu", "cpus": os.cpu_count(), "storage": "local disk (tmp)",
              "per_commit": {"captions": args.captions, "caption_words": 32, "answers": args.answers,
                             "blob_bytes": BLOB_BYTES, "video_s": args.interval}}
    with tempfile.TemporaryDirectory() as tmp:
        record["in_process"] = in_process(f"{tmp}/local", args.commits, args.captions, args.answers, args.interval)
        print(json.dumps({"in_process": record["in_process"]}), flush=True)
        with ray_session():  # a local cluster of this machine's cores
            record["ray_actor"] = []
            for n in [int(c) for c in args.clients.split(",")]:
                result = through_ray(f"{tmp}/ray-{n}", n, args.commits, args.captions, args.answers, args.interval)
                record["ray_actor"].append(result)
                print(json.dumps(result), flush=True)
    best = max(r["commits_per_s"] for r in record["ray_actor"])
    # One GPU at ~100 video-s/s commits 100 / interval snapshots per second.
    record["gpus_at_saturation"] = best * args.interval / 100
    print(f"one committer: {best:.1f} commits/s through Ray -> saturates at ~{record['gpus_at_saturation']:.0f} GPUs "
          f"(100 video-s/s each, a snapshot every {args.interval} s)")
    print(save(out_path(args, "committer_rate", device="cpu"), record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
