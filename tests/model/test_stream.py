"""The stream invariants: chunking, snapshot, branch isolation, constant size, batching."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from .conftest import make_frames


def feed_in_chunks(model, frames, times, sizes):
    stream = model.new_stream()
    logits = None
    i = 0
    for n in sizes:
        logits = stream.feed(frames[None, i:i + n], [times[i:i + n]])
        i += n
    assert i == len(frames)
    return stream, logits


def assert_same_state(a, b, atol=1e-4):
    ta, tb = a.state_tensors(), b.state_tensors()
    assert ta.keys() == tb.keys()
    for name in ta:
        torch.testing.assert_close(ta[name], tb[name], atol=atol, rtol=0, msg=lambda m: f"{name}: {m}")


def test_chunking_invariance_past_the_window(tiny_model):
    n = 20  # 20 frames x 4 tokens + vision_start = 81 tokens: the 31-slot window wraps twice
    assert n * tiny_model.tokens_per_frame > tiny_model.config.sliding_window * 2
    frames, times = make_frames(n), np.arange(n) * 0.5
    one_pass, logits_one = feed_in_chunks(tiny_model, frames, times, [n])
    by_frame, logits_frame = feed_in_chunks(tiny_model, frames, times, [1] * n)
    rng = np.random.default_rng(3)
    sizes = []
    while sum(sizes) < n:
        sizes.append(int(min(rng.integers(1, 7), n - sum(sizes))))
    random_chunks, logits_random = feed_in_chunks(tiny_model, frames, times, sizes)
    assert len(sizes) > 2
    for other, logits in ((by_frame, logits_frame), (random_chunks, logits_random)):
        assert_same_state(one_pass, other)
        torch.testing.assert_close(logits, logits_one, atol=1e-4, rtol=0)
    assert one_pass.state.counters["kv_len"].item() == tiny_model.config.kv_capacity


def test_state_depends_on_frames(tiny_model):
    """Guards the invariance test: different frames give a different state."""
    a, _ = feed_in_chunks(tiny_model, make_frames(4, seed=1), np.arange(4.0), [4])
    b, _ = feed_in_chunks(tiny_model, make_frames(4, seed=2), np.arange(4.0), [4])
    diff = max((a.state_tensors()[k].double() - b.state_tensors()[k].double()).abs().max().item()
               for k in a.state_tensors() if k.startswith("layers."))
    assert diff > 1e-3


SNAPSHOT_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, torch
    from vidindex.model import TINY_FRAME_SIZE, load_model
    checkpoint, snapshot, frames_file = sys.argv[1:]
    model = load_model(checkpoint, device="cpu", dtype="float32", frame_size=TINY_FRAME_SIZE)
    stream = model.load_stream(snapshot)
    logits = stream.feed(np.load(frames_file)[None], [np.arange(8, 14) * 0.5])
    torch.save({"logits": logits, **stream.state_tensors()}, snapshot + ".out.pt")
""")


def test_snapshot_resume_in_fresh_process_is_exact(tiny_model, tiny_checkpoint, tmp_path):
    frames, times = make_frames(14), np.arange(14) * 0.5
    uninterrupted, logits_ref = feed_in_chunks(tiny_model, frames, times, [8, 6])
    first, _ = feed_in_chunks(tiny_model, frames[:8], times[:8], [8])
    uri = str(tmp_path / "snap.safetensors")
    first.save(uri)
    np.save(tmp_path / "rest.npy", frames[8:])
    script = tmp_path / "resume.py"
    script.write_text(SNAPSHOT_SCRIPT)
    subprocess.run([sys.executable, str(script), str(tiny_checkpoint), uri, str(tmp_path / "rest.npy")], check=True)
    resumed = torch.load(uri + ".out.pt", weights_only=True)  # tensors only, no pickled objects
    assert torch.equal(resumed.pop("logits"), logits_ref)
    for name, t in uninterrupted.state_tensors().items():
        assert torch.equal(resumed[name], t), name


def test_snapshot_roundtrip_in_memory_filesystem(tiny_model):
    stream, _ = feed_in_chunks(tiny_model, make_frames(3), [0.0, 1.0, 2.0], [3])
    stream.save("memory://snaps/a.safetensors")
    loaded = tiny_model.load_stream("memory://snaps/a.safetensors")
    assert loaded.frames_seen == [3] and loaded.last_timestamp == [2.0]
    assert_same_state(stream, loaded, atol=0)


def test_snapshot_bytes_are_checked_against_their_digest(tiny_model):
    """from_bytes with a sha256 loads matching bytes, and names the digest (not a parse error)
    when the bytes were damaged, however the damage would have failed to parse."""
    import hashlib

    from vidindex.model import SnapshotError, Stream

    stream, _ = feed_in_chunks(tiny_model, make_frames(3), [0.0, 1.0, 2.0], [3])
    data = stream.to_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert_same_state(stream, Stream.from_bytes(tiny_model, data, "a", sha256=digest), atol=0)
    mismatch = "snapshot blob a has sha256 .*, expected " + digest
    with pytest.raises(SnapshotError, match=mismatch):  # fails to parse: reported at once
        Stream.from_bytes(tiny_model, b"\0" * 16 + data[16:], "a", sha256=digest)
    # A flipped bit in a tensor parses; the stream takes frames, but gives nothing out unchecked.
    damaged = Stream.from_bytes(tiny_model, data[:-1] + bytes([data[-1] ^ 1]), "a", sha256=digest)
    damaged.feed(make_frames(1, seed=5)[None], [[3.0]])
    for output in (damaged.verify, lambda: damaged.ask(["What?"]), damaged.to_bytes, damaged.split):
        with pytest.raises(SnapshotError, match=mismatch):
            output()


def test_ask_does_not_change_the_stream(tiny_model):
    stream, _ = feed_in_chunks(tiny_model, make_frames(6), np.arange(6.0), [6])
    before = {k: t.clone() for k, t in stream.state_tensors().items()}
    answer = stream.ask(["What is on screen?"], max_new_tokens=8)
    assert len(answer) == 1 and isinstance(answer[0], str)
    for name, t in stream.state_tensors().items():
        assert torch.equal(t, before[name]), name
    # and asking again gives the same answer (the branch starts from the same state)
    assert stream.ask(["What is on screen?"], max_new_tokens=8) == answer


def test_state_size_is_constant(tiny_model):
    stream = tiny_model.new_stream()
    stream.feed(make_frames(10)[None], [np.arange(10.0)])
    after_10 = stream.state_bytes()
    shapes_10 = {k: t.shape for k, t in stream.state_tensors().items()}
    frames = make_frames(99, seed=5, h=28, w=28)
    for i in range(10):
        stream.feed(frames[None], [10 + i * 99 + np.arange(99.0)])
    assert stream.frames_seen == [1000]
    assert stream.state_bytes() == after_10
    assert {k: t.shape for k, t in stream.state_tensors().items()} == shapes_10


def test_batched_streams_equal_single_streams(tiny_model):
    fa, fb = make_frames(7, seed=10), make_frames(7, seed=11)
    ta, tb = np.arange(7) * 1.0, np.arange(7) * 2.5 + 0.3
    a, la = feed_in_chunks(tiny_model, fa, ta, [3, 4])
    b, lb = feed_in_chunks(tiny_model, fb, tb, [3, 4])
    both = tiny_model.new_stream(batch=2)
    both.feed([fa[:3], fb[:3]], [ta[:3], tb[:3]])
    logits = both.feed([fa[3:], fb[3:]], [ta[3:], tb[3:]])
    torch.testing.assert_close(logits, torch.cat((la, lb)), atol=1e-4, rtol=0)
    sa, sb = both.split()
    assert_same_state(a, sa)
    assert_same_state(b, sb)
    answers = both.ask(["Describe it.", "What colour?"], max_new_tokens=6)
    assert answers == a.ask(["Describe it."], max_new_tokens=6) + b.ask(["What colour?"], max_new_tokens=6)
    assert both.ask(["What colour?"], max_new_tokens=6, index=[1]) == b.ask(["What colour?"], max_new_tokens=6)


def test_stack_then_split_round_trips(tiny_model):
    a, _ = feed_in_chunks(tiny_model, make_frames(2, seed=1), [0.0, 1.0], [2])
    b = tiny_model.new_stream()
    from vidindex.model import Stream
    joined = Stream.stack([a, b])
    assert joined.batch_size == 2
    sa, sb = joined.split()
    assert_same_state(a, sa, atol=0)
    assert_same_state(b, sb, atol=0)


def test_a_state_copies_another_in_place(tiny_model):
    """StreamState.copy_ (how the CUDA graphs' static states take a stream's state and give it
    back): every tensor equal after, in the same storage, the source untouched."""
    source = tiny_model.new_stream()
    source.feed(make_frames(3)[None], [[0.0, 1.0, 2.0]])
    before = {k: t.clone() for k, t in source.state_tensors().items()}
    target = tiny_model.new_state(1)
    storage = {k: t.data_ptr() for k, t in target.tensors().items()}
    target.copy_(source.state)
    for name, t in target.tensors().items():
        assert torch.equal(t, before[name]) and t.data_ptr() == storage[name], name
        assert torch.equal(source.state_tensors()[name], before[name]), name


def test_frames_fed_through_the_tower_beforehand_equal_frames_fed(tiny_model):
    """feed_embedded(model.embed_frames(frames)) is feed(frames), checks included."""
    from vidindex.model import FrameError

    frames, times = make_frames(5, seed=8), np.arange(5) * 0.5
    fed = tiny_model.new_stream()
    logits = fed.feed(frames[None], [times])
    embedded = tiny_model.new_stream()
    with torch.inference_mode():
        embeds = tiny_model.embed_frames(torch.as_tensor(frames))[None]  # [1, N, tokens, hidden]
    got = embedded.feed_embedded(embeds, [times])
    assert_same_state(fed, embedded, atol=0)
    assert torch.equal(got, logits) and embedded.last_timestamp == fed.last_timestamp == [2.0]
    with pytest.raises(FrameError, match="after the last one fed"):
        embedded.feed_embedded(embeds[:, :1], [[2.0]])
    with pytest.raises(FrameError, match=r"shape \[1, 2\], expected \[1, 1\]"):
        embedded.feed_embedded(embeds[:, :1], [[3.0, 3.5]])
    with pytest.raises(FrameError, match="increase strictly"):
        embedded.feed_embedded(embeds[:, :2], [[4.0, 4.0]])
    with pytest.raises(FrameError, match="embeds: expected"):
        embedded.feed_embedded(embeds[0], [[4.0, 4.5, 5.0, 5.5, 6.0]])
