"""Replay decodes parts of a range in worker processes and feeds them in order."""

import os
import threading
import time
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pytest
import torch

from vidindex.query import replay as replay_module
from vidindex.query.replay import replay, segment_bounds
from vidindex.video import VideoNotFound, sample_frames


class Recorder:
    """Takes the place of a model stream: records what it is fed."""

    def __init__(self, last=float("-inf")):
        self.last_timestamp = [last]
        self.times, self.frames, self.feeds = [], [], []

    def feed(self, frames, times):  # one stream: frames [1, N, H, W, 3], times [1, N]
        (frames,), (times,) = frames, times
        self.feeds.append(len(times))
        self.times += list(times)
        self.frames += list(frames)
        self.last_timestamp = [times[-1]]


def test_parts_start_short_grow_and_stay_short_enough_to_be_decoded_in_time():
    starts = segment_bounds(0, 300_000, 1500)
    lengths = [b - a for a, b in zip(starts, starts[1:])] + [300_000 - starts[-1]]
    assert starts[0] == 0 and lengths[0] == 1500
    cap = replay_module.SEGMENT_MAX_SECONDS * 1000
    growing = [n for n in lengths[:-1] if n < cap]  # the last part is what is left
    assert all(later > earlier for earlier, later in zip(growing, growing[1:]))
    assert lengths[len(growing):-1] == [cap] * (len(lengths) - 1 - len(growing))  # then stays at the cap
    assert lengths[-1] <= cap  # the rest of the range is cut at the cap, not left as one long part
    assert segment_bounds(0, 3000, 4000) == [0]  # a short range is one part


def test_replay_in_parts_feeds_the_frames_of_one_reader(make_video):
    path, _ = make_video("replay_parts.mp4", seconds=12.0)
    with sample_frames(path, fps=2.0, size=56, start=2.0) as reader:
        expected = [(t, f) for t, f in reader if t <= 10.25]
    stream = Recorder(last=expected[0][0] - 1e-3)
    fed = replay(stream, path, fps=2.0, size=56, start_s=2.0, until_s=10.25, batch=3,
                 segment_seconds=1.0)
    assert fed == len(expected) == len(stream.times)
    assert stream.times == [t for t, _ in expected]
    assert all((a == b).all() for a, (_, b) in zip(stream.frames, expected))
    assert max(stream.feeds) == 3


def test_a_dead_decoder_process_does_not_break_later_replays(make_video):
    path, _ = make_video("replay_after_crash.mp4", seconds=4.0)
    broken = replay_module.decode_pool().submit(os._exit, 1)  # a worker dies
    with pytest.raises(BrokenProcessPool):
        broken.result(timeout=60)
    stream = Recorder()
    assert replay(stream, path, fps=1.0, size=56, start_s=0.0, until_s=3.5, batch=2) == 4


def test_an_unreadable_video_raises_its_video_error(tmp_path):
    with pytest.raises(VideoNotFound):
        replay(Recorder(), str(tmp_path / "missing.mp4"), fps=1.0, size=56, start_s=0.0, until_s=5.0, batch=2)


def test_a_replay_decodes_before_it_is_fed(make_video):
    """Decoding starts when the Replay is made (as ask_at does before loading the snapshot).
    Parts that are ready by the time they are fed join into full batches across part
    boundaries; only the last feed is short."""
    from concurrent.futures import wait

    from vidindex.query.replay import Replay

    path, _ = make_video("replay_ahead.mp4", seconds=12.0)
    pending = Replay(path, fps=2.0, size=56, start_s=0.0, until_s=10.75, segment_seconds=1.0)
    assert len(pending.parts) == 5  # 1, 1.5, 2.25 and 3.375 s, and the 2.625 s left
    wait(pending.parts, timeout=60)
    assert all(part.done() for part in pending.parts)
    stream = Recorder()
    assert pending.feed(stream, batch=5) == 22  # frames at 0.0, 0.5, ..., 10.5
    assert stream.feeds == [5, 5, 5, 5, 2]
    assert stream.times == [k / 2 for k in range(22)]


class NotReadyYet:
    """A decoded part that says it is not done yet (as if its decoder were still busy)."""

    def __init__(self, part):
        object.__setattr__(self, "part", part)

    def done(self):
        return False

    def __getattr__(self, name):
        return getattr(self.part, name)

    def __setattr__(self, name, value):
        setattr(self.part, name, value)


def test_parts_fed_early_go_in_multiples_of_eight_after_the_first(make_video):
    """A part fed while the next one is still decoding goes in whole multiples of 8 frames (the
    model's smaller chunk), the rest waiting for the next part; but the first feed takes what
    there is, as the model has nothing else to do."""
    from concurrent.futures import wait

    from vidindex.query.replay import Replay

    path, _ = make_video("replay_multiples.mp4", seconds=12.0)
    pending = Replay(path, fps=4.0, size=56, start_s=0.0, until_s=10.9, segment_seconds=1.0)
    wait(pending.parts, timeout=60)
    pending.parts = [pending.parts[0]] + [NotReadyYet(part) for part in pending.parts[1:]]
    with sample_frames(path, fps=4.0, size=56) as reader:
        expected = [t for t, _ in reader if t <= 10.9]
    stream = Recorder()
    assert pending.feed(stream, batch=32) == len(expected) == 44
    assert stream.feeds == [4, 8, 16, 16]  # from parts of 4, 6, 9, 14 and 11 frames
    assert stream.times == expected


def shared_blocks():
    return {name for name in os.listdir("/dev/shm") if name.startswith(replay_module.BLOCK_PREFIX)}


def assert_none_left_beyond(before):
    """No shared memory file beyond `before` (another test's replay may still be finishing a
    part when this starts: it is removed when that part finishes, so wait a little)."""
    for _ in range(100):
        if shared_blocks() <= before:
            return
        time.sleep(0.05)
    assert shared_blocks() <= before


class FailingStream(Recorder):
    def feed(self, frames, times):
        super().feed(frames, times)
        raise RuntimeError("the model failed")


def test_decoded_frames_come_through_shared_memory_and_none_is_left(make_video):
    """Each part's frames come back in a shared memory file that is removed once taken, and also
    when the replay stops early: a failing feed, or a replay cancelled before it is fed."""
    from concurrent.futures import wait

    from vidindex.query.replay import Replay

    path, _ = make_video("replay_shm.mp4", seconds=8.0)
    before = shared_blocks()
    stream = Recorder()
    assert replay(stream, path, fps=2.0, size=56, start_s=0.0, until_s=7.5, batch=4,
                  segment_seconds=1.0) == 16
    assert_none_left_beyond(before)

    with pytest.raises(RuntimeError, match="the model failed"):
        replay(FailingStream(), path, fps=2.0, size=56, start_s=0.0, until_s=7.5, batch=2,
               segment_seconds=1.0)
    pending = Replay(path, fps=2.0, size=56, start_s=0.0, until_s=7.5, segment_seconds=1.0)
    wait(pending.parts, timeout=60)
    assert len(shared_blocks() - before) >= 3  # decoded, not taken
    pending.cancel()
    assert_none_left_beyond(before)


def test_frames_come_back_through_the_pipe_where_there_is_no_shared_memory(make_video, monkeypatch):
    from fractions import Fraction

    path, _ = make_video("replay_no_shm.mp4", seconds=3.0)
    times, shared = replay_module.decode_part(path, 2.0, 56, Fraction(0), Fraction(3))
    assert isinstance(shared, str) and os.path.basename(shared) in shared_blocks()
    from_file = replay_module._take_frames(shared, len(times), 56)
    assert os.path.basename(shared) not in shared_blocks()
    monkeypatch.setattr(replay_module, "SHARED_DIR", "/nonexistent-shm")
    times_again, piped = replay_module.decode_part(path, 2.0, 56, Fraction(0), Fraction(3))
    assert times_again == times and isinstance(piped, np.ndarray)
    assert piped.shape == (6, 56, 56, 3) and (replay_module._take_frames(piped, 6, 56) == from_file).all()


def test_a_replay_starts_on_the_tower_while_its_stream_loads(make_video, tiny_model):
    """feed_loaded: the stream is loaded on a thread while the first frames go through the
    vision tower, then fed. The result equals feeding the loaded stream afterwards; frames the
    loaded stream already holds (the snapshot's last) are not fed again."""
    from vidindex.model import Stream
    from vidindex.query.replay import Replay

    size = tiny_model.frame_size
    path, _ = make_video("replay_loaded.mp4", seconds=8.0)
    base = tiny_model.new_stream()
    assert replay(base, path, fps=2.0, size=size, start_s=0.0, until_s=2.0, batch=4) == 5
    data = base.to_bytes()
    expected = Stream.from_bytes(tiny_model, data)
    fed = replay(expected, path, fps=2.0, size=size, start_s=2.0, until_s=7.5, batch=4,
                 segment_seconds=1.0)
    assert fed == 11  # 2.5 .. 7.5 s; the frame at 2.0 s is the snapshot's last

    pending = Replay(path, fps=2.0, size=size, start_s=2.0, until_s=7.5, segment_seconds=1.0)
    loaded_on = []

    def load():  # slow: every batch goes through the tower before the stream is there
        loaded_on.append(threading.current_thread())
        time.sleep(1.0)
        return Stream.from_bytes(tiny_model, data)

    embedded = []
    embed_frames = tiny_model.embed_frames
    tiny_model.embed_frames = lambda frames: embedded.append(len(frames)) or embed_frames(frames)
    try:
        stream, got = pending.feed_loaded(tiny_model, load, batch=4)
    finally:
        del tiny_model.embed_frames
    assert got == fed and loaded_on[0] is not threading.current_thread()
    assert sum(embedded) == fed + 1  # all through the tower while loading, the snapshot's last frame too
    assert stream.last_timestamp == expected.last_timestamp == [7.5]
    a, b = stream.state_tensors(), expected.state_tensors()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-4, rtol=0, msg=lambda m: f"{name}: {m}")


def test_frames_put_through_the_tower_while_loading_are_bounded(make_video, tiny_model, monkeypatch):
    from vidindex.query.replay import Replay

    monkeypatch.setattr(replay_module, "LOADING_AHEAD_FRAMES", 4)
    path, _ = make_video("replay_ahead_bound.mp4", seconds=8.0)
    pending = Replay(path, fps=2.0, size=tiny_model.frame_size, start_s=0.0, until_s=7.5, segment_seconds=1.0)
    calls, loaded = [], threading.Event()
    embed_frames = tiny_model.embed_frames
    tiny_model.embed_frames = lambda frames: calls.append((len(frames), loaded.is_set())) or embed_frames(frames)

    def load():  # done only when the test says: the loop must stop on its own
        time.sleep(1.0)
        loaded.set()
        return tiny_model.new_stream()

    try:
        stream, fed = pending.feed_loaded(tiny_model, load, batch=2)
    finally:
        del tiny_model.embed_frames
    assert fed == 16 and stream.frames_seen == [16]
    before = [n for n, after in calls if not after]
    assert sum(before) == 4 and len(before) < len(calls)  # 4 frames ahead, the rest fed once loaded


def test_a_stream_that_fails_to_load_stops_the_replay(make_video, tiny_model):
    from vidindex.model import SnapshotError
    from vidindex.query.replay import Replay

    path, _ = make_video("replay_load_fails.mp4", seconds=6.0)
    before = shared_blocks()
    pending = Replay(path, fps=2.0, size=tiny_model.frame_size, start_s=0.0, until_s=5.5,
                     segment_seconds=1.0)

    def load():
        raise SnapshotError("snap.safetensors: corrupt snapshot")

    with pytest.raises(SnapshotError, match="corrupt snapshot"):
        pending.feed_loaded(tiny_model, load, batch=4)
    assert_none_left_beyond(before)
