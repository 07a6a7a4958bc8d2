"""A Stream: B video streams and their fixed-size state, fed frame by frame.

    stream = model.new_stream()                      # or model.new_stream(batch=B)
    stream.feed(frames[None], [timestamps])          # uint8 [B, N, H, W, 3] RGB; seconds [B, N]
    [answer] = stream.ask(["What is happening?"])    # one question per stream, on a branch
    stream.save("s3://bucket/v/300.safetensors")
    stream = model.load_stream(uri)                  # continues exactly where it stopped

Positions follow Qwen2.5-VL's M-RoPE: `<|vision_start|>` at the stream's first position p,
then a frame shown at time tau (seconds) gets, for its merged patch (i, j),
(s + floor(tau * tokens_per_second), s + i, s + j) with s = p + 1: the video rule of
Qwen2.5-VL with the real presentation time as the temporal index, carried across the whole
stream. The official streaming code differs in two details, on purpose not copied: its
frames are shifted by one more position (a double count in its position function) and it
counts time in whole seconds at an assumed 30 fps instead of using timestamps.

The byte format of saved streams is snapshot.py's; answers are generated in generate.py.
"""

from __future__ import annotations

import math

import fsspec
import numpy as np
import torch

from .errors import FrameError, SnapshotError
from .generate import generate, prefill, question_prompts
from .graphs import CHUNK_FRAMES, CHUNK_TOKENS, forward_tokens
from .snapshot import check_digest, start_digest, state_from_bytes, state_to_bytes
from .state import StreamState
from .vision import frames_to_tensor, host_to_device


class Stream:
    def __init__(self, model, state: StreamState):
        self.model = model
        self.state = state
        self._digest_check = None  # set by from_bytes(sha256=...) until verify() passes
        self._host = None  # host copies of the counters feed checks (see _host_counters)

    @property
    def batch_size(self) -> int:
        return self.state.batch_size

    @property
    def frames_seen(self) -> list[int]:
        return self.state.counters["frames_seen"].tolist()

    @property
    def last_timestamp(self) -> list[float]:
        return self._host_counters()["last_timestamp"].tolist()

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return self.state.tensors()

    def state_bytes(self) -> int:
        return self.state.nbytes()

    # Feeding ----------------------------------------------------------------------------
    @torch.inference_mode()
    def feed(self, frames, timestamps) -> torch.Tensor:
        """Feed N frames to each of the B streams: frames uint8 [B, N, H, W, 3] (an array, or a
        list of B groups of N frames), timestamps in seconds [B, N], after each stream's last.
        Returns next-token logits [B, vocab]."""
        frames = self._check_frames(frames)
        ts = self._check_times(timestamps, frames.shape[1], "frames")
        B, n = ts.shape
        return self._feed_embedded(self.model.embed_frames(frames.reshape(B * n, *frames.shape[2:])), ts)

    @torch.inference_mode()
    def feed_embedded(self, embeds: torch.Tensor, timestamps) -> torch.Tensor:
        """feed() for frames already through the vision tower, which needs no stream state:
        embeds [B, N, tokens_per_frame, hidden] (model.embed_frames of each stream's frames),
        timestamps [B, N]. A replay runs its first frames through the tower while the snapshot
        it resumes is still loading."""
        m = self.model
        expected = (self.batch_size, m.tokens_per_frame, m.config.hidden_size)
        if embeds.ndim != 4 or (embeds.shape[0], *embeds.shape[2:]) != expected:
            raise FrameError(f"embeds: expected [B, N, tokens_per_frame, hidden] = [{expected[0]}, N, "
                             f"{expected[1]}, {expected[2]}], got {list(embeds.shape)}")
        ts = self._check_times(timestamps, embeds.shape[1], "embedded frames")
        return self._feed_embedded(embeds, ts)

    def _feed_embedded(self, embeds: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        """Feed embedded frames at checked times ts [B, N]; embeds: the streams' frames in order,
        in any shape that reshapes to [B, N * tokens_per_frame, hidden]."""
        B, n = ts.shape
        m = self.model
        # Nothing below waits for the GPU: the host queues this feed and goes on to prepare the
        # next one while the GPU works.
        self._open_vision_spans()
        embeds = embeds.reshape(B, n * m.tokens_per_frame, -1)
        ts_on_device = host_to_device(ts, m.device)
        positions = self._frame_positions(ts_on_device)
        logits = forward_tokens(m, embeds, positions, self.state)
        c = self.state.counters
        c["next_pos"].copy_(torch.maximum(c["next_pos"], positions.amax(dim=(0, 2)) + 1))
        c["frames_seen"].add_(n)
        c["last_timestamp"].copy_(ts_on_device[:, -1])
        self._host_counters()["last_timestamp"] = ts[:, -1].clone()
        return logits

    def _host_counters(self) -> dict[str, torch.Tensor]:
        """Host copies of the counters a feed checks (last timestamps, open vision spans), read
        from the device once per Stream object and then kept by feed: reading them each feed
        would make the host wait for the GPU to finish the previous feed."""
        if self._host is None:
            c = self.state.counters
            self._host = _host_copies(c["last_timestamp"].cpu(), c["vision_base"].cpu())
        return self._host

    def _check_frames(self, frames) -> torch.Tensor:
        """Checked uint8 frames [B, N, H, W, 3] on the host."""
        B = self.batch_size
        if isinstance(frames, (np.ndarray, torch.Tensor)) and frames.ndim != 5:
            raise FrameError(f"frames: expected [B, N, H, W, 3] with B = {B} streams, got shape "
                             f"{list(frames.shape)} (one stream's frames f go as f[None])")
        if not isinstance(frames, (np.ndarray, torch.Tensor, list, tuple)):
            raise FrameError(f"frames: expected an array [B, N, H, W, 3] or a list of B groups, got {type(frames).__name__}")
        if len(frames) != B:
            raise FrameError(f"frames: expected one group of frames per stream ({B}), got {len(frames)}")
        groups = [frames_to_tensor(f) for f in frames]
        if len({g.shape for g in groups}) != 1:
            raise FrameError("frames: every stream must get the same number and size of frames in one feed")
        return torch.stack(groups)

    def _check_times(self, timestamps, n: int, what: str) -> torch.Tensor:
        """Checked float64 timestamps [B, N] on the host: finite, increasing, after the last fed."""
        B = self.batch_size
        try:
            ts = torch.as_tensor(np.asarray(timestamps, dtype=np.float64))
        except (TypeError, ValueError):
            raise FrameError(f"timestamps: expected seconds [B, N] with B = {B} streams, N = {n}") from None
        if ts.shape != (B, n):
            raise FrameError(f"timestamps: shape {list(ts.shape)}, expected [{B}, {n}] for {B} stream(s) of {n} {what}")
        if not torch.isfinite(ts).all() or (ts < 0).any():
            raise FrameError("timestamps: must be finite seconds >= 0")
        if (ts[:, 1:] <= ts[:, :-1]).any():
            raise FrameError("timestamps: must increase strictly within a feed")
        last = self._host_counters()["last_timestamp"]
        if (ts[:, 0] <= last).any():
            raise FrameError(f"timestamps: first new timestamp must come after the last one fed ({last.tolist()})")
        return ts

    def _frame_positions(self, ts: torch.Tensor) -> torch.Tensor:
        """[3, B, N * tokens_per_frame] positions for frames at times ts [B, N]."""
        m = self.model
        return frame_positions(self.state.counters["vision_base"], ts, m.tokens_per_frame,
                               m.config.vision.tokens_per_second)

    def _open_vision_spans(self) -> None:
        """Streams without an open vision span get `<|vision_start|>` first."""
        host = self._host_counters()
        closed = (~host["vision_open"]).nonzero().flatten()
        if len(closed) == 0:
            return
        ids = [self.model.config.vision_start_token_id]
        prefill(self.model, self.state, closed.tolist(), [ids] * len(closed))
        c = self.state.counters
        on_device = host_to_device(closed, self.model.device)
        c["vision_base"].index_copy_(0, on_device, c["next_pos"].index_select(0, on_device))
        host["vision_open"][closed] = True

    # Asking -----------------------------------------------------------------------------
    @torch.inference_mode()
    def ask(self, questions: list[str], max_new_tokens: int = 128, index: list[int] | None = None) -> list[str]:
        """Greedy answers as of now, one question per stream, on a branch: the stream does not
        change. `index` limits the asking to those streams (one question per index)."""
        if isinstance(questions, str) or not all(isinstance(q, str) for q in questions):
            raise ValueError("ask: questions must be a list of str, one per stream asked (for one: [question])")
        self.verify()
        index = list(range(self.batch_size)) if index is None else list(index)
        if len(questions) != len(index):
            raise ValueError(f"ask: got {len(questions)} questions for {len(index)} streams")
        vision_open = self._host_counters()["vision_open"][index].tolist()
        prompts = question_prompts(self.model, list(questions), vision_open)
        branch = self.state.select(index)  # a copy: the branch
        with self.model.runtime.lock:  # the decode graph holds the branch for all its steps
            tokens = generate(self.model, branch, prompts, max_new_tokens)
        tok = self.model.tokenizer
        return [tok.decode(t, skip_special_tokens=True).strip() for t in tokens]

    # Splitting, joining, saving ------------------------------------------------------------
    def split(self) -> list["Stream"]:
        self.verify()
        return [Stream(self.model, self.state.select([i])) for i in range(self.batch_size)]

    @classmethod
    def stack(cls, streams: list["Stream"]) -> "Stream":
        for s in streams:
            s.verify()
        return cls(streams[0].model, StreamState.cat(s.state for s in streams))

    def to_bytes(self, index: int = 0) -> bytes:
        """Snapshot bytes of stream `index` (snapshot.py's format)."""
        self.verify()
        one = self.state if self.batch_size == 1 else self.state.select([index])
        return state_to_bytes(self.model, one)

    def save(self, uri: str, index: int = 0, fs_options: dict | None = None) -> int:
        data = self.to_bytes(index)
        with fsspec.open(uri, "wb", **(fs_options or {})) as f:
            f.write(data)
        return len(data)

    @classmethod
    def from_bytes(cls, model, data: bytes, source: str = "<bytes>", sha256: str | None = None) -> "Stream":
        """The stream saved in `data`. sha256: the digest the bytes must have. It is checked on a
        second thread while the tensors load and the stream is fed; `verify()` waits for it, and
        nothing comes out of the stream (answers, snapshots, split streams) before it passed.
        Bytes that fail to parse are reported as a digest mismatch when they have one."""
        if sha256 is None:
            return cls._from_bytes(model, data, source)
        digest = start_digest(data)
        try:
            stream = cls._from_bytes(model, data, source)
        except Exception:
            check_digest(digest.result(), sha256, source)  # damaged bytes: say so, not how they failed
            raise
        stream._digest_check = (digest, sha256, source)
        return stream

    def verify(self) -> None:
        """Wait for the digest check of the bytes this stream was loaded from (if any);
        SnapshotError, every time, if they did not match."""
        if self._digest_check is not None:
            digest, expected, source = self._digest_check
            check_digest(digest.result(), expected, source)
            self._digest_check = None

    @classmethod
    def _from_bytes(cls, model, data: bytes, source: str) -> "Stream":
        state, counters = state_from_bytes(model, data, source)
        stream = cls(model, state)
        # The host's copies of the counters a feed checks come from the bytes, not the device:
        # a replay may have queued GPU work the copy waits behind (Replay.feed_loaded).
        stream._host = _host_copies(counters["last_timestamp"], counters["vision_base"])
        return stream

    @classmethod
    def load(cls, model, uri: str, fs_options: dict | None = None) -> "Stream":
        try:
            with fsspec.open(uri, "rb", **(fs_options or {})) as f:
                data = f.read()
        except FileNotFoundError:
            raise SnapshotError(f"{uri}: snapshot not found") from None
        return cls.from_bytes(model, data, source=uri)


def frame_positions(vision_base: torch.Tensor, ts: torch.Tensor, tokens_per_frame: int,
                    tokens_per_second: int) -> torch.Tensor:
    """M-RoPE positions [3, B, N * tokens_per_frame] of frames shown at times ts [B, N] (seconds)
    in vision spans opened at vision_base [B] (see the module docstring)."""
    n = ts.shape[1]
    side = math.isqrt(tokens_per_frame)
    t = vision_base[:, None] + torch.floor(ts * tokens_per_second).long()  # [B, N]
    grid = torch.arange(side, device=ts.device)
    rows = grid.repeat_interleave(side).repeat(n)
    cols = grid.repeat(side).repeat(n)
    pt = t.repeat_interleave(side * side, dim=1)
    ph = vision_base[:, None] + rows[None]
    pw = vision_base[:, None] + cols[None]
    return torch.stack((pt, ph, pw))


def _host_copies(last_timestamp: torch.Tensor, vision_base: torch.Tensor) -> dict[str, torch.Tensor]:
    """Stream._host_counters' contents from host tensors of the two counters."""
    return {"last_timestamp": last_timestamp, "vision_open": vision_base >= 0}


def warm_up(model) -> None:
    """Run every shape a replay and an ask use once, on a scratch stream, the first time this is
    called for `model`: each shape's first use compiles or autotunes kernels and captures CUDA
    graphs, a few tenths of a second each even with warm compile caches, which every replay of
    new feed sizes would otherwise pay. Off the fast path (nothing compiled or captured) it does
    nothing."""
    if model.kernels.name == "fast" and not model.runtime.warmed_up:
        warm_up_stream(model)
        model.runtime.warmed_up = True


def warm_up_stream(model) -> Stream:
    """warm_up's work on any path; returns its scratch stream."""
    n = sum(CHUNK_FRAMES)  # a feed running one of each frame chunk, and both compiled vision counts
    stream = model.new_stream()
    size = model.frame_size
    with torch.inference_mode():
        stream.feed(np.zeros((1, n, size, size, 3), np.uint8), np.arange(n, dtype=np.float64)[None])
        prefill(model, stream.state, [0], [[0] * sum(CHUNK_TOKENS)])  # one of each text chunk
    stream.ask(["Warm-up."], max_new_tokens=2)  # the decode step's graph
    return stream
