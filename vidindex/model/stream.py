"""A Stream: B video streams and their fixed-size state, fed frame by frame.

    stream = model.new_stream()                 # or model.new_stream(batch=4)
    stream.feed(frames, timestamps)             # uint8 [N, H, W, 3] RGB, seconds
    stream.ask("What is happening?")            # on a branch; the stream is unchanged
    stream.save("s3://bucket/v/300.safetensors")
    stream = model.load_stream(uri)             # continues exactly where it stopped

Positions follow Qwen2.5-VL's M-RoPE: `<|vision_start|>` at the stream's first position p,
then a frame shown at time tau (seconds) gets, for its merged patch (i, j),
(s + floor(tau * tokens_per_second), s + i, s + j) with s = p + 1: the video rule of
Qwen2.5-VL with the real presentation time as the temporal index, carried across the whole
stream. The official streaming code differs in two details, on purpose not copied: its
frames are shifted by one more position (a double count in its position function) and it
counts time in whole seconds at an assumed 30 fps instead of using timestamps.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from concurrent.futures import ThreadPoolExecutor

import fsspec
import numpy as np
import torch
from safetensors.torch import save as st_save

from .decode import decoder_for
from .errors import FrameError, SnapshotError
from .graphs import CHUNK_FRAMES, CHUNK_TOKENS, forward_tokens, graph_lock
from .prompts import encode, question_text
from .state import StreamState
from .vision import frames_to_tensor, host_to_device

SNAPSHOT_FORMAT = "vidindex-stream/1"


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
        """Feed N frames to each stream. B = 1: frames [N, H, W, 3], timestamps [N];
        B > 1: frames [B, N, H, W, 3], timestamps [B, N]. Returns next-token logits [B, vocab]."""
        frames, ts = self._check_inputs(frames, timestamps)
        self._check_after_last(ts)
        B, n = ts.shape
        return self._feed_embedded(self.model.embed_frames(frames.reshape(B * n, *frames.shape[2:])), ts)

    @torch.inference_mode()
    def feed_embedded(self, embeds: torch.Tensor, timestamps) -> torch.Tensor:
        """feed() for frames already through the vision tower, which needs no stream state:
        embeds = model.embed_frames(frames) [N, tokens_per_frame, hidden], B = 1. A replay runs
        its first frames through the tower while the snapshot it resumes is still loading."""
        if self.batch_size != 1:
            raise ValueError("feed_embedded: one stream only")
        ts = self._check_times(_one_stream_times(timestamps))
        if embeds.shape[0] != ts.shape[1]:
            raise FrameError(f"timestamps: {ts.shape[1]} for {embeds.shape[0]} embedded frames")
        self._check_after_last(ts)
        return self._feed_embedded(embeds, ts)

    def _feed_embedded(self, embeds: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
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

    def _check_after_last(self, ts: torch.Tensor) -> None:
        last = self._host_counters()["last_timestamp"]
        if (ts[:, 0] <= last).any():
            raise FrameError(f"timestamps: first new timestamp must come after the last one fed ({last.tolist()})")

    def _host_counters(self) -> dict[str, torch.Tensor]:
        """Host copies of the counters a feed checks (last timestamps, open vision spans), read
        from the device once per Stream object and then kept by feed: reading them each feed
        would make the host wait for the GPU to finish the previous feed."""
        if self._host is None:
            c = self.state.counters
            self._host = _host_copies(c["last_timestamp"].cpu(), c["vision_base"].cpu())
        return self._host

    def _check_inputs(self, frames, timestamps):
        """Checked uint8 frames [B, N, H, W, 3] and float64 timestamps [B, N], on the host."""
        B = self.batch_size
        if B == 1:
            frames = frames_to_tensor(frames)[None]
            ts = _one_stream_times(timestamps)
        else:
            if len(frames) != B:
                raise FrameError(f"frames: expected one group of frames per stream ({B}), got {len(frames)}")
            groups = [frames_to_tensor(f) for f in frames]
            if len({g.shape for g in groups}) != 1:
                raise FrameError("frames: every stream must get the same number and size of frames in one feed")
            frames = torch.stack(groups)
            ts = torch.as_tensor(np.asarray(timestamps, dtype=np.float64))
        if ts.shape != frames.shape[:2]:
            raise FrameError(f"timestamps: shape {list(ts.shape)} does not match {frames.shape[1]} frames per stream")
        return frames, self._check_times(ts)

    @staticmethod
    def _check_times(ts: torch.Tensor) -> torch.Tensor:
        if not torch.isfinite(ts).all() or (ts < 0).any():
            raise FrameError("timestamps: must be finite seconds >= 0")
        if (ts[:, 1:] <= ts[:, :-1]).any():
            raise FrameError("timestamps: must increase strictly within a feed")
        return ts

    def _frame_positions(self, ts: torch.Tensor) -> torch.Tensor:
        """[3, B, N * tokens_per_frame] positions for frames at times ts [B, N]."""
        m = self.model
        B, n = ts.shape
        side = math.isqrt(m.tokens_per_frame)
        base = self.state.counters["vision_base"]
        t = base[:, None] + torch.floor(ts * m.config.vision.tokens_per_second).long()  # [B, N]
        grid = torch.arange(side, device=ts.device)
        rows = grid.repeat_interleave(side).repeat(n)
        cols = grid.repeat(side).repeat(n)
        pt = t.repeat_interleave(side * side, dim=1)
        ph = base[:, None] + rows[None]
        pw = base[:, None] + cols[None]
        return torch.stack((pt, ph, pw))

    def _open_vision_spans(self) -> None:
        """Streams without an open vision span get `<|vision_start|>` first."""
        host = self._host_counters()
        closed = (~host["vision_open"]).nonzero().flatten()
        if len(closed) == 0:
            return
        ids = [self.model.config.vision_start_token_id]
        self._prefill_each(closed.tolist(), [ids] * len(closed))
        c = self.state.counters
        on_device = host_to_device(closed, self.model.device)
        c["vision_base"].index_copy_(0, on_device, c["next_pos"].index_select(0, on_device))
        host["vision_open"][closed] = True

    def _prefill_each(self, index: list[int], token_lists: list[list[int]], state: StreamState | None = None):
        """Feed text tokens to the streams at `index` (each its own list), one stream at a time
        when the lengths differ. Returns last-position logits [len(index), vocab]."""
        state = state or self.state
        m = self.model
        groups: dict[int, list[int]] = {}
        for k, ids in enumerate(token_lists):
            groups.setdefault(len(ids), []).append(k)
        logits = torch.empty(len(index), m.config.vocab_size, device=m.device)
        for length, members in groups.items():
            slots = [index[k] for k in members]
            sub = state if slots == list(range(state.batch_size)) else state.select(slots)
            ids = host_to_device(torch.tensor([token_lists[k] for k in members]), m.device)
            start = sub.counters["next_pos"]
            pos = start[:, None] + torch.arange(length, device=m.device)[None]
            out = forward_tokens(m, m.embed_tokens(ids), pos[None].expand(3, -1, -1), sub)
            sub.counters["next_pos"].add_(length)
            if sub is not state:
                state.assign(slots, sub)
            if len(groups) == 1:
                return out  # members are all of index, in order
            logits[members] = out
        return logits

    # Asking -----------------------------------------------------------------------------
    @torch.inference_mode()
    def ask(self, question, max_new_tokens: int = 128, index: list[int] | None = None):
        """Greedy answer(s) to a question as of now, on a branch: the stream does not change.

        One question (str) for all streams, or a list with one per stream; `index` limits the
        asking to those streams (the list then has one question per index)."""
        self.verify()
        index = list(range(self.batch_size)) if index is None else list(index)
        questions = [question] * len(index) if isinstance(question, str) else list(question)
        if len(questions) != len(index):
            raise ValueError(f"ask: got {len(questions)} questions for {len(index)} streams")
        vision_open = self._host_counters()["vision_open"][index].tolist()
        branch = self.state.select(index)  # a copy: the branch
        with graph_lock(self.model):  # the decode graph holds the branch for all its steps
            tokens = self._generate(branch, questions, vision_open, max_new_tokens)
        tok = self.model.tokenizer
        answers = [tok.decode(t, skip_special_tokens=True).strip() for t in tokens]
        return answers[0] if isinstance(question, str) and len(index) == 1 else answers

    def _generate(self, branch: StreamState, questions: list[str], vision_open: list[bool],
                  max_new_tokens: int) -> list[list[int]]:
        m, cfg = self.model, self.model.config
        prompts = []
        for q, is_open in zip(questions, vision_open):
            ids = encode(m.tokenizer, question_text(q))
            prompts.append([cfg.vision_end_token_id] + ids if is_open else ids)
        logits = self._prefill_each(list(range(len(prompts))), prompts, state=branch)
        out: list[list[int]] = [[] for _ in prompts]
        done = [False] * len(prompts)
        step = None

        def advance(ids):  # queue one decode step; (next tokens, their reader)
            nonlocal step
            step = step or decoder_for(m, branch)
            following = step(ids).argmax(-1)
            return following, _to_host(following)

        nxt = logits.argmax(-1)
        read = _to_host(nxt)
        for k in range(max_new_tokens):
            final = k + 1 == max_new_tokens
            # On a GPU the next step is queued before this token is read back, so the GPU does not
            # wait for the host between steps. A step queued after the last token is wasted, not
            # wrong: it runs on the branch.
            ahead = advance(nxt) if nxt.is_cuda and not final else None
            for i, t in enumerate(read()):
                done[i] = done[i] or t == cfg.eos_token_id
                if not done[i]:
                    out[i].append(t)
            if all(done) or final:
                break
            nxt, read = ahead or advance(nxt)
        return out

    # Snapshots --------------------------------------------------------------------------
    def split(self) -> list["Stream"]:
        self.verify()
        return [Stream(self.model, self.state.select([i])) for i in range(self.batch_size)]

    @classmethod
    def stack(cls, streams: list["Stream"]) -> "Stream":
        for s in streams:
            s.verify()
        return cls(streams[0].model, StreamState.cat(s.state for s in streams))

    def to_bytes(self, index: int = 0) -> bytes:
        """safetensors bytes of one stream's state, with metadata to check it against a model."""
        self.verify()
        one = self.state if self.batch_size == 1 else self.state.select([index])
        m = self.model
        meta = {
            "format": SNAPSHOT_FORMAT,
            "model_id": m.model_id,
            "config_hash": m.config.config_hash(),
            "frame_size": m.frame_size,
            "dtype": m.precision,
            "frames_seen": int(one.counters["frames_seen"][0]),
            "last_timestamp": float(one.counters["last_timestamp"][0]),
            "tokens_seen": int(one.counters["tokens_seen"][0]),
        }
        tensors = {k: v.contiguous().cpu() for k, v in one.tensors().items()}
        return st_save(tensors, metadata={"vidindex": json.dumps(meta)})

    def save(self, uri: str, index: int = 0, storage_options: dict | None = None) -> int:
        data = self.to_bytes(index)
        with fsspec.open(uri, "wb", **(storage_options or {})) as f:
            f.write(data)
        return len(data)

    @classmethod
    def from_bytes(cls, model, data: bytes, source: str = "<bytes>", sha256: str | None = None) -> "Stream":
        """The stream saved in `data`. sha256: the digest the bytes must have. Hashing a 4B
        model's state takes ~70 ms, so it runs on a second thread while the tensors load and
        the stream is fed; `verify()` waits for it, and nothing comes out of the stream (answers,
        snapshots, split streams) before it passed. Bytes that fail to parse are reported as a
        digest mismatch when they have one."""
        if sha256 is None:
            return cls._from_bytes(model, data, source)
        digest = _hashers().submit(lambda: hashlib.sha256(data).hexdigest())
        try:
            stream = cls._from_bytes(model, data, source)
        except Exception:
            _check_digest(digest.result(), sha256, source)  # damaged bytes: say so, not how they failed
            raise
        stream._digest_check = (digest, sha256, source)
        return stream

    def verify(self) -> None:
        """Wait for the digest check of the bytes this stream was loaded from (if any);
        SnapshotError, every time, if they did not match."""
        if self._digest_check is not None:
            digest, expected, source = self._digest_check
            _check_digest(digest.result(), expected, source)
            self._digest_check = None

    @classmethod
    def _from_bytes(cls, model, data: bytes, source: str) -> "Stream":
        meta = read_snapshot_metadata(data, source)
        if meta.get("config_hash") != model.config.config_hash():
            raise SnapshotError(
                f"{source}: snapshot is from another model config (hash {meta.get('config_hash')}, "
                f"this model {model.config.config_hash()}, model id {meta.get('model_id')})"
            )
        if meta.get("frame_size") != model.frame_size:
            raise SnapshotError(f"{source}: snapshot used frame size {meta.get('frame_size')}, model uses {model.frame_size}")
        template = model.new_state(1).tensors()
        counters = _copy_tensors(data, source, template, read_back=("last_timestamp", "vision_base"))
        stream = cls(model, StreamState.from_tensors(template, model.config.num_hidden_layers))
        # The host's copies of the counters a feed checks come from the bytes, not the device:
        # a replay may have queued GPU work the copy waits behind (Replay.feed_loaded).
        stream._host = _host_copies(counters["last_timestamp"], counters["vision_base"])
        return stream

    @classmethod
    def load(cls, model, uri: str, storage_options: dict | None = None) -> "Stream":
        try:
            with fsspec.open(uri, "rb", **(storage_options or {})) as f:
                data = f.read()
        except FileNotFoundError:
            raise SnapshotError(f"{uri}: snapshot not found") from None
        return cls.from_bytes(model, data, source=uri)


_hasher_pool: ThreadPoolExecutor | None = None


def _one_stream_times(timestamps) -> torch.Tensor:
    """One stream's timestamps as float64 seconds [1, N] on the host."""
    return torch.as_tensor(np.asarray(timestamps, dtype=np.float64)).reshape(1, -1)


def _host_copies(last_timestamp: torch.Tensor, vision_base: torch.Tensor) -> dict[str, torch.Tensor]:
    """Stream._host_counters' contents from host tensors of the two counters."""
    return {"last_timestamp": last_timestamp, "vision_open": vision_base >= 0}


def warm_up(model) -> None:
    """Run every shape a replay and an ask use once, on a scratch stream, the first time this is
    called for `model`: each shape's first use compiles or autotunes kernels and captures CUDA
    graphs, a few tenths of a second each even with warm compile caches, which every replay of
    new feed sizes would otherwise pay. Off the fast path (nothing compiled or captured) it does
    nothing."""
    if model.kernels.name == "fast" and not model.__dict__.get("_warmed_up"):
        warm_up_stream(model)
        model.__dict__["_warmed_up"] = True


def warm_up_stream(model) -> Stream:
    """warm_up's work on any path; returns its scratch stream."""
    n = sum(CHUNK_FRAMES)  # a feed running one of each frame chunk, and both compiled vision counts
    stream = model.new_stream()
    with torch.inference_mode():
        stream.feed(np.zeros((n, model.frame_size, model.frame_size, 3), np.uint8), np.arange(n, dtype=np.float64))
        stream._prefill_each([0], [[0] * sum(CHUNK_TOKENS)])  # one of each text chunk
    stream.ask("Warm-up.", max_new_tokens=2)  # the decode step's graph
    return stream


def _to_host(t: torch.Tensor):
    """Start copying t to the host; returns a function that waits for the copy alone (not for
    work queued after it) and gives t as a list."""
    if not t.is_cuda:
        return t.tolist
    buf = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    buf.copy_(t, non_blocking=True)
    copied = torch.cuda.Event()
    copied.record()

    def wait():
        copied.synchronize()
        return buf.tolist()

    return wait


def _hashers() -> ThreadPoolExecutor:
    global _hasher_pool
    if _hasher_pool is None:
        _hasher_pool = ThreadPoolExecutor(2, thread_name_prefix="snapshot-sha256")
    return _hasher_pool


def _check_digest(actual: str, expected: str, source: str) -> None:
    if actual != expected:
        raise SnapshotError(f"snapshot blob {source} has sha256 {actual}, expected {expected}")


def _read_header(data: bytes, source: str) -> tuple[dict, int]:
    """(the safetensors JSON header, where the tensor bytes start)."""
    try:
        header_len = int.from_bytes(data[:8], "little")
        if len(data) < 8 or header_len <= 0 or header_len > len(data) - 8:
            raise ValueError("bad header length")
        header = json.loads(data[8 : 8 + header_len])
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except (ValueError, UnicodeDecodeError):
        raise SnapshotError(f"{source}: not a vidindex snapshot (corrupt or not safetensors)") from None
    return header, 8 + header_len


def read_snapshot_metadata(data: bytes, source: str = "<bytes>") -> dict:
    """The JSON metadata of a snapshot, with a clear error for anything that is not one."""
    header, _ = _read_header(data, source)
    try:
        meta = json.loads(header["__metadata__"]["vidindex"])
    except (ValueError, KeyError, TypeError):
        raise SnapshotError(f"{source}: not a vidindex snapshot (corrupt or not safetensors)") from None
    if meta.get("format") != SNAPSHOT_FORMAT:
        raise SnapshotError(f"{source}: unknown snapshot format {meta.get('format')!r}")
    return meta


SAFETENSORS_DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32, "F64": torch.float64,
                      "I64": torch.int64, "I32": torch.int32}


def _copy_tensors(data: bytes, source: str, template: dict[str, torch.Tensor], read_back=()) -> dict[str, torch.Tensor]:
    """Copy the snapshot's tensors into the template's (same names and shapes); returns host
    copies of those named in read_back. All bytes go to the device in one copy and each tensor
    is a view of them, instead of a host copy per tensor (safetensors' own loader) and then a
    host-to-device copy per tensor."""
    header, start = _read_header(data, source)
    entries = {name: info for name, info in header.items() if name != "__metadata__"}
    if set(entries) != set(template):
        missing, extra = sorted(set(template) - set(entries)), sorted(set(entries) - set(template))
        raise SnapshotError(f"{source}: state tensors do not match the model (missing {missing[:5]}, unexpected {extra[:5]})")
    size = len(data) - start
    layout = {}
    for name, t in template.items():
        try:
            info = entries[name]
            dtype, shape, (begin, end) = SAFETENSORS_DTYPES[info["dtype"]], list(info["shape"]), info["data_offsets"]
            if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end <= size):
                raise ValueError(f"byte range {begin}..{end} outside the {size} data bytes")
            if end - begin != math.prod(shape) * dtype.itemsize:
                raise ValueError(f"{end - begin} bytes for shape {shape} of {info['dtype']}")
        except (KeyError, TypeError, ValueError) as e:
            raise SnapshotError(f"{source}: corrupt snapshot ({name}: {e!r})") from None
        if shape != list(t.shape):
            raise SnapshotError(f"{source}: {name} has shape {shape}, expected {list(t.shape)}")
        layout[name] = (dtype, begin, end)
    host = torch.empty(0, dtype=torch.uint8)
    if size:
        with warnings.catch_warnings():  # read-only bytes: the view is only read, then copied
            warnings.simplefilter("ignore", UserWarning)
            host = torch.frombuffer(data, dtype=torch.uint8, offset=start, count=size)
    raw = host.to(next(iter(template.values())).device)
    for name, t in template.items():
        dtype, begin, end = layout[name]
        part = raw[begin:end]
        if begin % dtype.itemsize:  # unaligned for its dtype: an aligned copy first
            part = part.clone()
        t.copy_(part.view(dtype).view(t.shape))
    copies = {}
    for name in read_back:
        dtype, begin, end = layout[name]
        copies[name] = host[begin:end].clone().view(dtype).view(template[name].shape)  # clone: aligned
    return copies
