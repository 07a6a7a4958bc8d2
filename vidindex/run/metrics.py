"""Metrics a cluster operator can scrape: Ray's metrics API, so they appear on the Ray
dashboard and its Prometheus endpoint (names get Ray's `ray_` prefix there).

Each indexing actor owns one IndexMetrics and feeds it the engine's events. Counters add up
across actors; the frames/s gauge is per actor (tag `worker`).
"""

from __future__ import annotations

import os
import time

METRIC_NAMES = (
    "vidindex_video_seconds", "vidindex_frames", "vidindex_captions", "vidindex_answers",
    "vidindex_snapshots", "vidindex_videos_done", "vidindex_videos_failed", "vidindex_frames_per_second",
)


class IndexMetrics:
    def __init__(self, config_id: str):
        from ray.util.metrics import Counter, Gauge

        tags = ("config_id",)
        self.tags = {"config_id": config_id}
        self.video_seconds = Counter("vidindex_video_seconds", "Seconds of video indexed", tag_keys=tags)
        self.frames = Counter("vidindex_frames", "Frames fed to the model", tag_keys=tags)
        self.captions = Counter("vidindex_captions", "Captions committed", tag_keys=tags)
        self.answers = Counter("vidindex_answers", "Answers committed", tag_keys=tags)
        self.snapshots = Counter("vidindex_snapshots", "Snapshots committed", tag_keys=tags)
        self.videos_done = Counter("vidindex_videos_done", "Videos finished", tag_keys=tags)
        self.videos_failed = Counter("vidindex_videos_failed", "Videos that failed", tag_keys=tags)
        self.frames_per_second = Gauge("vidindex_frames_per_second", "Frames per second of one indexing actor",
                                       tag_keys=("config_id", "worker"))
        self._worker_tags = {**self.tags, "worker": str(os.getpid())}
        self._window_start, self._window_frames = time.monotonic(), 0

    def on_event(self, kind: str, payload: dict) -> None:
        if kind == "frames":
            self.frames.inc(payload["frames"], self.tags)
            if payload.get("video_seconds", 0) > 0:
                self.video_seconds.inc(payload["video_seconds"], self.tags)
            self._update_rate(payload["frames"])
        elif kind == "checkpoint":
            self.snapshots.inc(1, self.tags)
        elif kind == "rows":
            if payload.get("captions"):
                self.captions.inc(payload["captions"], self.tags)
            if payload.get("answers"):
                self.answers.inc(payload["answers"], self.tags)
        elif kind == "finish":
            (self.videos_done if payload["status"] == "done" else self.videos_failed).inc(1, self.tags)

    def _update_rate(self, frames: int) -> None:
        self._window_frames += frames
        elapsed = time.monotonic() - self._window_start
        if elapsed >= 5.0:  # a rate over a few seconds, not per step
            self.frames_per_second.set(self._window_frames / elapsed, self._worker_tags)
            self._window_start, self._window_frames = time.monotonic(), 0
