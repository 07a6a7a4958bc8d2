"""The snapshot byte format: one stream's state as safetensors bytes, with JSON metadata that
ties it to a model (config hash, frame size, dtype) and says where the stream stood.

    data = state_to_bytes(model, state)            # state of one stream
    state, counters = state_from_bytes(model, data, source)
    meta = read_snapshot_metadata(data)            # without loading the tensors

Bytes that come with a sha256 are hashed on a thread beside the load (start_digest,
check_digest): Stream.from_bytes holds the result back until it passed.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from concurrent.futures import Future, ThreadPoolExecutor

import torch
from safetensors.torch import save as st_save

from .errors import SnapshotError
from .state import StreamState

SNAPSHOT_FORMAT = "vidindex-stream/1"

SAFETENSORS_DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32, "F64": torch.float64,
                      "I64": torch.int64, "I32": torch.int32}

_hasher_pool: ThreadPoolExecutor | None = None


def state_to_bytes(model, state: StreamState) -> bytes:
    """safetensors bytes of a one-stream state, with metadata to check it against a model."""
    if state.batch_size != 1:
        raise ValueError(f"state_to_bytes: one stream's state, got {state.batch_size}")
    counters = state.counters
    meta = {
        "format": SNAPSHOT_FORMAT,
        "model_id": model.model_id,
        "config_hash": model.config.config_hash(),
        "frame_size": model.frame_size,
        "dtype": model.precision,
        "frames_seen": int(counters["frames_seen"][0]),
        "last_timestamp": float(counters["last_timestamp"][0]),
        "tokens_seen": int(counters["tokens_seen"][0]),
    }
    tensors = {k: v.contiguous().cpu() for k, v in state.tensors().items()}
    return st_save(tensors, metadata={"vidindex": json.dumps(meta)})


def state_from_bytes(model, data: bytes, source: str) -> tuple[StreamState, dict[str, torch.Tensor]]:
    """(the one-stream state saved in `data`, on the model's device; host copies of its
    last_timestamp and vision_base counters, read from the bytes so that nothing waits for the
    device). SnapshotError naming `source` for bytes of another model or not a snapshot."""
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
    return StreamState.from_tensors(template, model.config.num_hidden_layers), counters


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


def start_digest(data: bytes) -> Future:
    """The sha256 hex digest of data, computed on a thread (a 4B model's state takes ~70 ms)."""
    global _hasher_pool
    if _hasher_pool is None:
        _hasher_pool = ThreadPoolExecutor(2, thread_name_prefix="snapshot-sha256")
    return _hasher_pool.submit(lambda: hashlib.sha256(data).hexdigest())


def check_digest(actual: str, expected: str, source: str) -> None:
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
