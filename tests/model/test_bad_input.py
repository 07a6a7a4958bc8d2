"""Bad frames, timestamps and snapshots get clear errors and leave the stream usable."""

import json

import numpy as np
import pytest
import torch

from vidindex.model import TINY_FRAME_SIZE, FrameError, SnapshotError, Stream, load_model, write_tiny_checkpoint

from .conftest import make_frames


@pytest.mark.parametrize("frames,match", [
    (np.zeros((2, 30, 30, 3), dtype=np.float32), "expected uint8"),
    (np.zeros((2, 30, 30), dtype=np.uint8), r"expected shape \[N, H, W, 3\]"),
    (np.zeros((2, 30, 30, 4), dtype=np.uint8), r"expected shape \[N, H, W, 3\]"),
    (np.zeros((0, 30, 30, 3), dtype=np.uint8), "empty or degenerate"),
    ([], "empty list"),
])
def test_malformed_frames(tiny_model, frames, match):
    stream = tiny_model.new_stream()
    with pytest.raises(FrameError, match=match):
        stream.feed([frames], [[0.0, 1.0][: len(frames)] or [0.0]])


def test_malformed_timestamps_leave_the_stream_unchanged(tiny_model):
    stream = tiny_model.new_stream()
    stream.feed(make_frames(2)[None], [[0.0, 1.0]])
    before = {k: t.clone() for k, t in stream.state_tensors().items()}
    for ts, match in (([[1.0, 2.0]], "after the last one"), ([[3.0, 3.0]], "increase strictly"),
                      ([[np.nan, 4.0]], "finite"), ([[5.0]], r"shape \[1, 1\], expected \[1, 2\]"),
                      ([5.0, 6.0], r"shape \[2\], expected \[1, 2\]"), ([[5.0], [6.0, 7.0]], "expected seconds")):
        with pytest.raises(FrameError, match=match):
            stream.feed(make_frames(2)[None], ts)
    assert all(torch.equal(t, before[k]) for k, t in stream.state_tensors().items())


def test_unbatched_frames_and_a_bare_question_get_clear_errors(tiny_model):
    """Frames and timestamps are always per stream ([B, N, ...], [B, N]), questions always a list."""
    stream = tiny_model.new_stream()
    with pytest.raises(FrameError, match=r"expected \[B, N, H, W, 3\] with B = 1 streams.*f\[None\]"):
        stream.feed(make_frames(2), [[0.0, 1.0]])
    with pytest.raises(FrameError, match=r"one group of frames per stream \(1\), got 2"):
        stream.feed([make_frames(2), make_frames(2)], [[0.0, 1.0], [0.0, 1.0]])
    pair = tiny_model.new_stream(batch=2)
    with pytest.raises(FrameError, match="same number and size of frames"):
        pair.feed([make_frames(2), make_frames(1)], [[0.0, 1.0], [0.0]])
    stream.feed(make_frames(2)[None], [[0.0, 1.0]])
    with pytest.raises(ValueError, match="list of str"):
        stream.ask("What?")
    with pytest.raises(ValueError, match="2 questions for 1 streams"):
        stream.ask(["What?", "Where?"])


def test_a_resumed_stream_checks_against_the_state_it_was_saved_with(tiny_model):
    """A stream keeps host copies of the counters its feeds check; a stream made from saved
    bytes starts them from its state: the timestamp check holds, its vision span is still open
    (no second <|vision_start|>), and it goes on exactly as the original."""
    stream = tiny_model.new_stream()
    stream.feed(make_frames(2)[None], [[0.0, 1.0]])
    resumed = Stream.from_bytes(tiny_model, stream.to_bytes())
    with pytest.raises(FrameError, match="after the last one"):
        resumed.feed(make_frames(1)[None], [[1.0]])
    frames = make_frames(2, seed=5)[None]
    resumed.feed(frames, [[1.5, 2.0]])
    stream.feed(frames, [[1.5, 2.0]])
    a, b = stream.state_tensors(), resumed.state_tensors()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_corrupt_snapshot(tiny_model, tmp_path):
    stream = tiny_model.new_stream()
    stream.feed(make_frames(2)[None], [[0.0, 1.0]])
    path = tmp_path / "s.safetensors"
    stream.save(str(path))
    data = path.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.safetensors").write_bytes(b"this is not a snapshot at all")
    with pytest.raises(SnapshotError, match="trunc.safetensors: corrupt snapshot"):
        tiny_model.load_stream(str(tmp_path / "trunc.safetensors"))
    with pytest.raises(SnapshotError, match="junk.safetensors: not a vidindex snapshot"):
        tiny_model.load_stream(str(tmp_path / "junk.safetensors"))
    with pytest.raises(SnapshotError, match="missing.safetensors: snapshot not found"):
        tiny_model.load_stream(str(tmp_path / "missing.safetensors"))


def rewrite_header(data: bytes, edit) -> bytes:
    """Snapshot bytes with edit(header) applied to their safetensors JSON header."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    edit(header)
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + data[8 + n:]


@pytest.mark.parametrize("edit,match", [
    (lambda h: h["kv_len"].update(data_offsets=[0, 10 ** 9]), "corrupt snapshot \\(kv_len: .*outside"),
    (lambda h: h["kv_len"].update(dtype="Q7"), "corrupt snapshot \\(kv_len: KeyError"),
    (lambda h: h["kv_len"].update(shape=[2]), "corrupt snapshot \\(kv_len: .*bytes for shape \\[2\\]"),
    (lambda h: h.pop("kv_len"), "state tensors do not match the model \\(missing \\['kv_len'\\]"),
    (lambda h: h.update(extra=h["kv_len"]), "state tensors .*unexpected \\['extra'\\]"),
])
def test_snapshot_with_a_damaged_header(tiny_model, edit, match):
    """Each tensor's entry is checked against the bytes and the model before anything is copied."""
    from vidindex.model import Stream

    stream = tiny_model.new_stream()
    stream.feed(make_frames(2)[None], [[0.0, 1.0]])
    with pytest.raises(SnapshotError, match="s: " + match):
        Stream.from_bytes(tiny_model, rewrite_header(stream.to_bytes(), edit), "s")


def test_a_snapshot_loads_whatever_the_alignment_of_its_tensors(tiny_model):
    """Tensor bytes at offsets that are not a multiple of their item size still load exactly."""
    from vidindex.model import Stream

    stream = tiny_model.new_stream()
    stream.feed(make_frames(2)[None], [[0.0, 1.0]])
    data = stream.to_bytes()

    def shift(header):  # one padding byte before all tensor bytes: every offset becomes odd
        for name, info in header.items():
            if name != "__metadata__":
                info["data_offsets"] = [o + 1 for o in info["data_offsets"]]

    n = int.from_bytes(data[:8], "little")
    shifted = rewrite_header(data[:8 + n] + b"\0" + data[8 + n:], shift)
    loaded = Stream.from_bytes(tiny_model, shifted, "s")
    for name, t in stream.state_tensors().items():
        assert torch.equal(loaded.state_tensors()[name], t), name


def test_snapshot_from_another_config(tiny_model, tmp_path):
    d = write_tiny_checkpoint(tmp_path / "other")
    cfg = json.loads((d / "config.json").read_text())
    cfg["sliding_window"] = 40  # same weights, different window: state shapes and math differ
    (d / "config.json").write_text(json.dumps(cfg))
    other = load_model(d, device="cpu", frame_size=TINY_FRAME_SIZE)
    stream = other.new_stream()
    stream.feed(make_frames(1)[None], [[0.0]])
    uri = str(tmp_path / "other.safetensors")
    stream.save(uri)
    with pytest.raises(SnapshotError, match="other.safetensors: snapshot is from another model config"):
        tiny_model.load_stream(uri)
    bigger_frames = load_model(d.parent / "other", device="cpu", frame_size=2 * TINY_FRAME_SIZE)
    with pytest.raises(SnapshotError, match="frame size"):
        bigger_frames.load_stream(uri)


def test_bad_frame_size(tiny_checkpoint):
    with pytest.raises(ValueError, match="frame_size 50: must be a positive multiple of 28"):
        load_model(tiny_checkpoint, device="cpu", frame_size=50)
