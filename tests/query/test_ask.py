"""ask --at T: the state rebuilt from the nearest snapshot plus replayed frames is the state of
a stream that watched the video from 0 to T, and so is the answer."""

import re

import numpy as np
import pytest
import torch

from vidindex.query import ask_at, stream_as_of
from vidindex.query.common import open_store, resolve_video
from vidindex.query.models import model_for
from vidindex.video import sample_frames

QUESTION = "What is happening?"


def watched_until(db, video_id, t, frame_by_frame):
    """A fresh stream fed the video's sampled frames with timestamp <= t."""
    target = resolve_video(open_store(db), video_id)
    model = model_for(target.config, "cpu")
    stream = model.new_stream()
    with sample_frames(target.uri, fps=target.config.sample_fps, size=target.config.frame_size) as frames:
        taken = [(ts, frame) for ts, frame in frames if ts <= t]
    if frame_by_frame:
        for ts, frame in taken:
            stream.feed(frame[None, None], [[ts]])
    else:
        stream.feed(np.stack([f for _, f in taken])[None], [[ts for ts, _ in taken]])
    return stream, len(taken)


def assert_states(a, b, exact):
    a, b = a.state_tensors(), b.state_tensors()
    assert a.keys() == b.keys()
    for name in a:
        if exact:
            assert torch.equal(a[name], b[name]), name
        else:
            torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-4, msg=name)


# (T, snapshot started from, frames replayed) with snapshots every 4 s and 2 frames/s
CASES = [(5.5, 4.0, 3), (3.0, None, 7), (8.0, 8.0, 0), (7.3, 4.0, 6)]


@pytest.mark.parametrize("t, snapshot_t, replayed", CASES)
def test_state_as_of_t_is_exactly_watching_until_t(exact_archive, t, snapshot_t, replayed):
    """Indexed and replayed frame by frame, one stream at a time: bit-identical state and answer."""
    db, video_id = exact_archive
    stream, as_of = stream_as_of(db, video_id, t, replay_batch=1)
    direct, frames = watched_until(db, video_id, t, frame_by_frame=True)
    assert (as_of.snapshot_t, as_of.frames_replayed) == (snapshot_t, replayed)
    assert stream.frames_seen == [frames]
    assert_states(stream, direct, exact=True)
    assert [ask_at(db, video_id, t, QUESTION).answer] == direct.ask([QUESTION], max_new_tokens=6)


def test_ask_at_t_on_a_batched_index(archive):
    """The engine's batched index (several videos per forward, several frames per step): the
    state matches a one-pass watch to fp32 rounding and the answer is the same."""
    video_id = archive.video_ids["cam2.mp4"]
    result = ask_at(archive.db, video_id, 7.3, QUESTION)
    a = result.as_of
    assert (a.video_id, a.config_id, a.uri) == (video_id, archive.config.config_id, archive.uris["cam2.mp4"])
    assert (a.at, a.as_of, a.snapshot_t, a.frames_replayed, a.last_frame_t) == (7.3, 7.3, 4.0, 6, 7.0)
    assert re.search(r"/0000004000-[0-9a-f]{16}\.safetensors$", a.snapshot_uri)  # <t_ms>-<sha256 prefix>
    assert set(a.timings) == {"load_model_s", "load_snapshot_s", "replay_s", "ask_s", "total_s"}
    assert result.device == "cpu"
    stream, _ = stream_as_of(archive.db, video_id, 7.3)
    direct, _ = watched_until(archive.db, video_id, 7.3, frame_by_frame=False)
    assert_states(stream, direct, exact=False)
    assert [result.answer] == direct.ask([QUESTION], max_new_tokens=archive.config.max_new_tokens)
    assert result.answer  # the tiny model answers in words
    # the same moment written as HH:MM:SS, and the video named by its URI
    again = ask_at(archive.db, archive.uris["cam2.mp4"], "00:00:07.3", QUESTION)
    assert again.answer == result.answer


def test_after_the_end_means_the_end(archive):
    video_id = archive.video_ids["cam0.mp4"]
    late = ask_at(archive.db, video_id, "01:00:00", QUESTION)
    end = ask_at(archive.db, video_id, "end", QUESTION)
    assert late.answer == end.answer
    assert (late.as_of.as_of, late.as_of.snapshot_t, late.as_of.frames_replayed) == (10.0, 10.0, 0)
    assert "past the end" in late.as_of.note
    assert end.as_of.at is None and end.as_of.note is None
    stream, _ = stream_as_of(archive.db, video_id, "end")
    direct, frames = watched_until(archive.db, video_id, 1e9, frame_by_frame=False)
    assert stream.frames_seen == [frames] == [20]
    assert [end.answer] == direct.ask([QUESTION], max_new_tokens=archive.config.max_new_tokens)


def test_max_new_tokens_limits_the_answer(archive):
    video_id = archive.video_ids["cam1.mp4"]
    short = ask_at(archive.db, video_id, 9, QUESTION, max_new_tokens=2)
    full = ask_at(archive.db, video_id, 9, QUESTION)
    assert len(short.answer.split()) <= 2
    assert full.answer.startswith(short.answer)


@pytest.mark.parametrize("t", [7.9, 3.7])
def test_replay_decoded_in_parallel_segments_is_the_same(exact_archive, t):
    """A long replay is decoded by several readers, each from its own start: the frames joined
    in order are exactly the frames of one reader."""
    db, video_id = exact_archive
    stream, as_of = stream_as_of(db, video_id, t, replay_batch=1, segment_seconds=1.0)
    direct, frames = watched_until(db, video_id, t, frame_by_frame=True)
    assert stream.frames_seen == [frames]
    assert as_of.frames_replayed == (7 if t == 7.9 else 8)
    assert_states(stream, direct, exact=True)
