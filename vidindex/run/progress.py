"""Progress of an index run: the tracker that the indexing actors report to, and the live bar the
driver draws from it (the report printed at the end is vidindex.cli.index's).

The tracker is a plain class; the pipeline runs it as one small Ray actor. Indexing actors send
it the engine's events ("start", "frames", "checkpoint", "finish", and "rows" for committed
captions/answers) in small batches; the driver polls `drain()` about twice a second. Events of
a restarted actor may repeat work (it resumes from its last snapshot), so a video's progress is
the furthest time reached, never the sum of what was fed.

The tracker also carries a stopped run's word to its indexing actors: Ray Data holds their handles
(the driver has none, and Ray Data's own shutdown leaves a busy actor running), so each actor asks
`stopping()` a few times a second and ends itself once the driver has called `stop()` (or the
tracker is gone: it lives as long as its run).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field


@dataclass
class VideoProgress:
    uri: str
    video_id: str
    duration_s: float
    resumed_from_s: float = 0.0
    reached_s: float = 0.0  # furthest stream time fed in this run
    status: str = "queued"  # queued | running | done | failed
    error: str | None = None
    starts: int = 0  # >1 when an actor died and the video was resumed by its replacement
    restarted_from_s: list[float] = field(default_factory=list)
    pid: int | None = None

    @property
    def covered_s(self) -> float:
        """Seconds of this video that are indexed so far (for the bar)."""
        if self.status == "done":
            return self.duration_s
        return min(max(self.reached_s, self.resumed_from_s), self.duration_s or float("inf"))


class ProgressTracker:
    """Run-wide counters and per-video progress, fed by events from every indexing actor."""

    def __init__(self, planned: list[dict]):
        self.started = time.time()
        self.videos: dict[str, VideoProgress] = {}
        for row in planned:
            self.videos[row["video_id"]] = VideoProgress(
                uri=row["uri"], video_id=row["video_id"], duration_s=float(row.get("duration_s") or 0.0),
                resumed_from_s=float(row.get("resume_from_s") or 0.0),
                reached_s=float(row.get("resume_from_s") or 0.0),
            )
        self.totals = {"frames": 0, "video_seconds": 0.0, "captions": 0, "answers": 0, "snapshots": 0}
        self._unread: list[dict] = []
        self._stopping = False
        self._asked: dict[str, tuple[float, bool]] = {}  # indexing actor id -> (last asked, was told to stop)

    def report(self, events: list[dict]) -> None:
        for event in events:
            self._apply(event)
        self._unread.extend(events)

    def _apply(self, event: dict) -> None:
        kind = event["kind"]
        if kind == "rows":
            self.totals["captions"] += int(event.get("captions", 0))
            self.totals["answers"] += int(event.get("answers", 0))
            return
        video = self._video(event)
        video.pid = event.get("pid", video.pid)
        if kind == "start":
            video.starts += 1
            video.status = "running"
            if event.get("duration_s"):
                video.duration_s = float(event["duration_s"])
            if video.starts > 1:
                video.restarted_from_s.append(float(event.get("resumed_from_s") or 0.0))
        elif kind == "frames":
            video.reached_s = max(video.reached_s, float(event["t_s"]))
            self.totals["frames"] += int(event["frames"])
            self.totals["video_seconds"] += float(event.get("video_seconds") or 0.0)
        elif kind == "checkpoint":
            video.reached_s = max(video.reached_s, float(event["t_s"]))
            self.totals["snapshots"] += 1
        elif kind == "finish":
            video.status = event["status"]
            video.error = event.get("error")

    def _video(self, event: dict) -> VideoProgress:
        video_id = event.get("video_id") or event["uri"]
        if video_id not in self.videos:  # e.g. a video whose id changed between plan and run
            self.videos[video_id] = VideoProgress(uri=event.get("uri", ""), video_id=video_id, duration_s=0.0)
        return self.videos[video_id]

    def drain(self) -> tuple[list[dict], dict]:
        """Events since the last drain, and the summary now."""
        events, self._unread = self._unread, []
        return events, self.summary()

    def summary(self) -> dict:
        videos = list(self.videos.values())
        failed = [v for v in videos if v.status == "failed"]
        # A failed video's unindexed rest will not be processed: the bar's total drops it.
        total = sum(v.duration_s for v in videos if v.status != "failed") + sum(v.covered_s for v in failed)
        return {
            "elapsed_s": time.time() - self.started,
            "total_s": total,
            "covered_s": sum(v.covered_s for v in videos),
            "resumed_s": sum(v.resumed_from_s for v in videos),
            "videos": len(videos),
            "done": sum(v.status == "done" for v in videos),
            "failed": len(failed),
            "running": sum(v.status == "running" for v in videos),
            **self.totals,
        }

    def video_table(self) -> list[dict]:
        return [dict(vars(v), covered_s=v.covered_s) for v in self.videos.values()]

    def stop(self) -> None:
        self._stopping = True

    def stopping(self, actor_id: str) -> bool:
        """Asked by each indexing actor, every STOP_POLL_S: whether it ends itself now."""
        self._asked[actor_id] = (time.monotonic(), self._stopping)
        return self._stopping

    def actors_not_stopped(self, within_s: float) -> int:
        """Indexing actors that asked within the last `within_s` seconds (alive) and were not yet told."""
        now = time.monotonic()
        return sum(now - asked <= within_s and not told for asked, told in self._asked.values())


class ProgressBar:
    """The live bar: seconds of video indexed / total, videos done / failed, frames/s, ETA."""

    def __init__(self, enabled: bool | None = None, stream=None):
        from tqdm import tqdm

        stream = stream or sys.stderr
        # None: only on a terminal, so logs and pipes get no carriage-return noise.
        enabled = stream.isatty() if enabled is None else enabled
        self.bar = tqdm(total=0, unit="s", unit_scale=False, desc="indexing", file=stream, disable=not enabled,
                        dynamic_ncols=True, smoothing=0.1,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} video-s "
                                   "[{elapsed}<{remaining}, {rate_fmt}]{postfix}")

    def update(self, summary: dict) -> None:
        self.bar.total = max(summary["total_s"], summary["covered_s"], 1e-9)
        self.bar.n = summary["covered_s"]
        fps = summary["frames"] / summary["elapsed_s"] if summary["elapsed_s"] > 0 else 0.0
        self.bar.set_postfix_str(
            f"videos {summary['done']} done, {summary['failed']} failed of {summary['videos']}, {fps:.1f} frames/s",
            refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()

