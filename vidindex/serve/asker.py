"""The model side of `vidindex serve`: a replica that loads and warms the index's models once,
then answers "ask as of T" and ask-the-archive batches for as long as it runs.

Results come back as data, errors too ({"error": ..., "status": ...}): an exception crossing
Ray would carry its remote traceback in its text.
"""

from __future__ import annotations

import logging
import threading
import time

from vidindex.model import warm_up
from vidindex.query.archive import answer_batch
from vidindex.query.ask import ask_at
from vidindex.query.common import config_of, open_store, resolve_video
from vidindex.query.errors import QueryError
from vidindex.query.models import model_for, model_key, pick_device
from vidindex.serve.errors import describe

logger = logging.getLogger("vidindex.serve")
WARM_UP_AT_S = 1.0  # replays the first second: decodes a little, feeds a little, answers one token


class Asker:
    """One model replica. `checkpoint`: load the models from here instead of the path or hub id
    each video's index config names (`vidindex serve --model`)."""

    def __init__(self, db: str, device: str = "auto", checkpoint: str | None = None):
        self.db = db
        self.device = pick_device(device)
        self.checkpoint = checkpoint
        self.store = open_store(db)
        # One model call at a time: a replica's model runs one stream batch at a time (CUDA
        # graphs, one state); Serve spreads requests over replicas.
        self._model_lock = threading.Lock()
        self.warmed = self._warm_up()

    def _warm_up(self) -> list[dict]:
        """Load and warm every model the index's videos were indexed with, then ask one video a
        question a second past a snapshot: the first real ask then finds the replay's decoder
        processes started and every code path it takes loaded."""
        done, seen, askable = [], set(), None
        for row in self.store.rows("videos").to_pylist():
            if askable is None and row["status"] == "done":
                askable = row
            try:
                config = config_of(row)
            except QueryError:
                continue  # a row without a usable config cannot be asked anyway
            key = model_key(config, self.device)
            if key in seen:
                continue
            seen.add(key)
            started = time.perf_counter()
            warm_up(self._model(config))
            done.append({"model": config.model, "checkpoint": self.checkpoint or config.model, "dtype": config.dtype,
                         "frame_size": config.frame_size, "device": self.device,
                         "seconds": round(time.perf_counter() - started, 3)})
            logger.info("model %s (%s, %s) loaded and warmed in %.1f s", config.model, config.dtype, self.device,
                        done[-1]["seconds"])
        if askable is not None:
            out = self.ask(askable["video_id"], WARM_UP_AT_S, "Warm-up.", askable["config_id"], max_new_tokens=1)
            if "error" in out:
                logger.warning("warm-up ask of video %s failed: %s", askable["video_id"], out["error"])
        return done

    def _model(self, config):
        return model_for(config, self.device, checkpoint=self.checkpoint)

    def ask(self, video_id: str, at, question: str, config_id: str | None = None,
            max_new_tokens: int | None = None) -> dict:
        """AskResult.to_dict() plus the time spent waiting for the model, or an error."""
        try:
            waited = time.perf_counter()
            with self._model_lock:
                waited = time.perf_counter() - waited
                if self.checkpoint:  # a model not loaded yet comes from `checkpoint` too
                    self._model(resolve_video(self.store, video_id, config_id).config)
                result = ask_at(self.store, video_id, at, question, config_id=config_id, device=self.device,
                                max_new_tokens=max_new_tokens).to_dict()
            result["timings"]["queued_s"] = waited
            return result
        except Exception as error:  # noqa: BLE001 - returned as data (see the module docstring)
            return describe(error)

    def answer_batch(self, tasks: list[dict], question: str) -> list[dict]:
        """vidindex.query.archive.answer_batch on this replica's warm model."""
        try:
            with self._model_lock:
                self._model(config_of({"video_id": tasks[0]["video_id"], "config_id": tasks[0]["config_id"],
                                       "config": tasks[0]["config"]}))
                return answer_batch(tasks, question, self.device, self.store.fs_options)
        except Exception as error:  # noqa: BLE001 - every task of the batch gets the error
            return [{"error": describe(error)["error"]} for _ in tasks]

    def info(self) -> dict:
        return {"device": self.device, "models": self.warmed}
