"""Ask-as-of-T latency of the 4B-shaped model on one GPU, end to end from files, in bf16 and
with float8 linear layers.

    python bench/ask_latency.py --video replay.mp4 [--variant NAME] [--out PATH] [--profile]

The record goes to bench/results/ask_latency-<date>-<gpu>[-variant].json (records.py); with
--profile, the kernel tables of a 64-frame feed per precision go beside it
(...-profile-feed64-<precision>.txt).

The video must be at least 335 s long; if the file does not exist, a synthetic one is written
there (448x448, 30 fps, H.264, noise-textured so it is not trivially cheap to decode). For
each precision (random weights, same seed) a snapshot is taken after the video's first 32 s
(1 fps, 448x448) and written to disk as safetensors; then "ask as of T" is timed the way
`vidindex ask` runs it: start the decoders, load the snapshot file (its sha256 checked on a
second thread while the frames are fed), feed every sampled frame up to T as it is decoded
(several readers at once), ask a question on a branch (16 new tokens). T = snapshot + 299.5 s is the worst case of a 5-minute
snapshot interval (299 frames), T = snapshot + 150 s the median. Only the index lookups are
left out (LanceDB, milliseconds).

Also printed: the warm-up of a fresh process (compilation and graph capture, as the first ask of
a process does), the first feed and ask after it, steady feed frames/s at 32 and 64 frames per
feed with the share of the bf16 compute ceiling, the decoder's time for 64 frames eager and from
CUDA graphs (and how far the graphed feed's logits and state are from eager's), decode ms per
token eager and as a CUDA graph (tokens must be identical), and how far float8's logits and
answer are from bf16's.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from concurrent.futures import wait

import numpy as np
import torch
from gpu_timing import Results, cuda_time, synced
from records import add_arguments, out_path

from vidindex.model import ModelConfig, Stream, warm_up
from vidindex.model.decode import decoder_for, eager_step
from vidindex.model import stream as stream_module
from vidindex.model.generate import prefill
from vidindex.model.graphs import forward_tokens
from vidindex.model.prompts import encode, question_text
from vidindex.model.tiny import random_model
from vidindex.query.replay import Replay, replay
from vidindex.video import sample_frames

FLOP_PER_FRAME = 3.29e12
PEAK_FLOPS = 800e12
SNAPSHOT_AT = 31.0  # last frame in the snapshot (frames at 0..31 s)
QUESTION = "What happened?"


def random_frames(n, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, 448, 448, 3), dtype=np.uint8)


class FrameCounter:
    """Stands in for a Stream in replay(): takes the frames and does nothing with them."""

    def __init__(self, last):
        self.last_timestamp = [last]

    def feed(self, frames, times):  # frames [1, N, H, W, 3], times [1, N]
        self.last_timestamp = [times[0][-1]]


def decode_both(model, s, res, label):
    ids = encode(model.tokenizer, question_text(QUESTION))
    branch = s.state.select([0])
    logits0 = prefill(model, branch, [0], [ids])
    runs = {}
    for name in ("eager", "graph"):
        state = branch.clone()
        (step, dt) = synced(lambda: decoder_for(model, state) if name == "graph" else
                            (lambda x: eager_step(model, state, x)))
        res.put(f"{label}.decode_setup_{name}_s", dt)
        logits, tokens, all_logits = logits0, [], []
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(32):
            nxt = logits.argmax(-1)
            tokens.append(int(nxt[0]))
            logits = step(nxt)
            all_logits.append(logits.clone())
        torch.cuda.synchronize()
        res.put(f"{label}.decode_ms_per_token_{name}", (time.perf_counter() - t) / 32 * 1e3)
        runs[name] = (tokens, torch.stack(all_logits))
    (eager_tokens, eager_logits), (graph_tokens, graph_logits) = runs["eager"], runs["graph"]
    same = next((i for i, (a, b) in enumerate(zip(eager_tokens, graph_tokens)) if a != b), len(eager_tokens))
    res.put(f"{label}.decode_graph_tokens_equal", eager_tokens == graph_tokens)
    res.put(f"{label}.decode_graph_same_tokens_for_steps", same)
    # compared while both decode the same tokens (after a flipped near-tie they diverge)
    res.put(f"{label}.decode_graph_logits_max_abs_diff", float((eager_logits[:same] - graph_logits[:same]).abs().max())
            if same else None)
    res.put(f"{label}.decode_logits_scale", float(eager_logits.abs().max()))


def graphed_vs_eager(model, res, label):
    """The decoder over 64 frames eager and from CUDA graphs: time, and the distance between a
    40-frame feed (graphs of 32 and 8 frames) and the same feed eager."""
    st = model.new_stream()
    st.feed(random_frames(32, 3)[None], [np.arange(32, dtype=np.float64)])
    frames = random_frames(40, 4)[None]
    times = [32 + np.arange(40, dtype=np.float64)]
    fed = {}
    for name in ("eager", "graph"):
        other = Stream(model, st.state.clone())
        if name == "eager":
            stream_module.forward_tokens = lambda m, e, p, s: m.forward_embeds(e, p, s)
        try:
            fed[name] = (other.feed(frames, times), other.state.tensors())
        finally:
            stream_module.forward_tokens = forward_tokens
    (ref, ref_state), (got, got_state) = fed["eager"], fed["graph"]
    res.put(f"{label}.graph_feed_logits_rel", float((got - ref).norm() / ref.norm()))
    res.put(f"{label}.graph_feed_state_max_rel", max(
        float((got_state[k].double() - ref_state[k].double()).norm() / ref_state[k].double().norm().clamp(min=1e-30))
        for k in ref_state if k.startswith("layers.")))
    res.put(f"{label}.graph_feed_counters_equal", all(torch.equal(got_state[k], ref_state[k])
                                                      for k in ref_state if not k.startswith("layers.")))
    with torch.inference_mode():
        embeds = model.embed_frames(torch.as_tensor(random_frames(64, 2))).reshape(1, -1, model.config.hidden_size)
        positions = st._frame_positions(torch.arange(100, 164, device="cuda", dtype=torch.float64)[None])
        state = st.state.clone()
        for name, fn in (("eager", model.forward_embeds), ("graph", lambda e, p, s: forward_tokens(model, e, p, s))):
            res.put(f"{label}.decoder_64_frames_ms_{name}", cuda_time(lambda: fn(embeds, positions, state), reps=3) * 1e3)


def gpu_busy(fn, gaps=0):
    """(fn(), wall seconds, seconds with a kernel or copy running on the GPU, the `gaps` longest
    GPU idle spans with the host ops running during each) for one call, from a profiler trace:
    where wall and busy differ, the GPU waited for the host."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CUDA] + ([ProfilerActivity.CPU] if gaps else [])
    with profile(activities=activities) as prof:
        out, wall = synced(fn)
    events = prof.events()
    spans = sorted((e.time_range.start, e.time_range.end) for e in events if e.device_type == DeviceType.CUDA)
    busy, reach, idle = 0.0, float("-inf"), []
    for start, end in spans:
        if end > reach:
            if reach > float("-inf") and start > reach:
                idle.append((start - reach, reach, start))
            busy += end - max(start, reach)
            reach = end
    origin = spans[0][0] if spans else 0
    longest = []
    for length, start, end in sorted(idle, reverse=True)[:gaps]:
        host = [e for e in events if e.device_type == DeviceType.CPU
                and e.time_range.start < end and e.time_range.end > start and e.time_range.elapsed_us() > 0.2 * length]
        longest.append({"at_ms": round((start - origin) / 1e3, 1), "ms": round(length / 1e3, 2),
                        "host": sorted({e.name for e in host})[:12]})
    return out, wall, busy / 1e6, longest


def profile_feed(model, path):
    """Kernel tables of one 64-frame feed, vision and decoder apart (matmuls by shape)."""
    from torch.profiler import ProfilerActivity, profile

    st = model.new_stream()
    f = random_frames(64, 2)
    st.feed(f[None], [np.arange(64, dtype=np.float64)])
    frames_u8 = torch.as_tensor(f)
    positions = st._frame_positions(torch.arange(64, 128, device="cuda", dtype=torch.float64)[None])
    with torch.inference_mode():
        embeds = model.embed_frames(frames_u8).reshape(1, -1, model.config.hidden_size)
        parts = {"vision": lambda: model.embed_frames(frames_u8),
                 "decoder": lambda: model.forward_embeds(embeds, positions, st.state)}
        with open(path, "w") as fh:
            for name, fn in parts.items():
                fn()
                torch.cuda.synchronize()
                with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True) as prof:
                    fn()
                    torch.cuda.synchronize()
                fh.write(f"== {name}: kernels\n")
                fh.write(prof.key_averages().table(sort_by="self_device_time_total", row_limit=40))
                fh.write(f"\n== {name}: ops by input shape\n")
                fh.write(prof.key_averages(group_by_input_shape=True).table(sort_by="device_time_total", row_limit=40))
                fh.write("\n")


def ask_as_of(model, snapshot, snapshot_sha256, video, ahead, phases, decoded_first=False):
    """ask_at's model-side path: decoders start first, the snapshot loads while the first frames
    go through the vision tower (its sha256 checked on a second thread while the frames are
    fed), the frames up to T are fed, the question is asked.
    decoded_first: wait until every part is decoded and handed over before feeding (a check of
    how much the hand-over of decoded parts costs the feeding thread)."""
    t0 = time.perf_counter()
    pending = Replay(video, fps=1.0, size=448, start_s=SNAPSHOT_AT, until_s=SNAPSHOT_AT + ahead)
    done_at = phases["parts_decoded_at_s"] = [None] * len(pending.parts)  # when each part was ready
    for i, part in enumerate(pending.parts):
        part.add_done_callback(lambda _, i=i: done_at.__setitem__(i, round(time.perf_counter() - t0, 4)))
    if decoded_first:
        wait(pending.parts)
        t0 = time.perf_counter()

    def load():  # on a thread, while the first frames go through the vision tower
        with open(snapshot, "rb") as f:
            data = f.read()
        phases["read_snapshot_s"] = time.perf_counter() - t0
        stream = Stream.from_bytes(model, data, snapshot, sha256=snapshot_sha256)
        phases["load_snapshot_s"] = time.perf_counter() - t0
        return stream

    st, phases["frames_replayed"] = pending.feed_loaded(model, load, batch=32)
    st.verify()  # the digest check, which ran meanwhile (ask_at waits for it here too)
    torch.cuda.synchronize()
    phases["replay_s"] = time.perf_counter() - t0  # loading the snapshot included
    t = time.perf_counter()
    out = st.ask([QUESTION], max_new_tokens=16)[0]
    torch.cuda.synchronize()
    phases["ask_s"] = time.perf_counter() - t
    return out


def measure(model, label, args, res, first):
    """Everything for one model: first calls, snapshot, steady feeding, decode, ask as of T."""
    put = lambda key, value: res.put(f"{label}.{key}", value)  # noqa: E731
    put("precision", model.precision)
    # A fresh process pays for compiling (cold caches) or loading them, and for capturing CUDA
    # graphs, once: in warm_up, as the first ask_at of a process does (query.ask).
    _, dt = synced(lambda: warm_up(model))
    put("warm_up_s", dt)
    s = model.new_stream()
    logits, dt = synced(lambda: s.feed(np.stack([f for _, f in first])[None], [[t for t, _ in first]]))
    put("first_feed_32_frames_s", dt)
    _, dt = synced(lambda: s.ask([QUESTION], max_new_tokens=16))
    put("first_ask_16_tokens_s", dt)
    answers, dt = synced(lambda: s.ask([QUESTION], max_new_tokens=16))
    answer = answers[0]
    put("second_ask_16_tokens_s", dt)
    snapshot = os.path.join(tempfile.mkdtemp(), "snap.safetensors")
    _, dt = synced(lambda: s.save(snapshot))
    put("snapshot_save_s", dt)
    put("snapshot_mb", os.path.getsize(snapshot) / 1e6)
    with open(snapshot, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()

    for per_feed in [int(b) for b in args.batches.split(",")]:
        st = model.new_stream()
        f = random_frames(per_feed, 1)[None]
        clock = [0.0]

        def step():
            st.feed(f, [clock[0] + np.arange(per_feed, dtype=np.float64)])
            clock[0] += per_feed

        _, dt = synced(step)
        put(f"first_feed_{per_feed}_per_feed_s", dt)
        dt = cuda_time(step, reps=4)
        put(f"feed_fps_{per_feed}_per_feed", per_feed / dt)
        put(f"feed_share_of_ceiling_{per_feed}_per_feed", per_feed / dt * FLOP_PER_FRAME / PEAK_FLOPS)

    graphed_vs_eager(model, res, label)
    with torch.inference_mode():
        decode_both(model, s, res, label)

    for name, ahead in (("worst", 299.5), ("median", 150.0)):
        for rep in range(2):
            phases = {}
            _, dt = synced(lambda: ask_as_of(model, snapshot, digest, args.video, ahead, phases))
            phases["total_s"] = dt
            put(f"ask_at_T_{name}_rep{rep}", phases)
    feeds = []
    originals = {"feed": Stream.feed, "feed_embedded": Stream.feed_embedded}
    embed_frames = type(model).embed_frames

    def logged_embed(self, frames):  # when the vision tower was entered and left, for how many
        t = time.perf_counter()
        out = embed_frames(self, frames)
        feeds.append(("embed", round(t - t0, 4), round(time.perf_counter() - t0, 4), len(frames)))
        return out

    def logged(name):  # when each feed was entered and left, and its size (times [1, N])
        def feed(self, frames, times):
            t = time.perf_counter()
            out = originals[name](self, frames, times)
            feeds.append((name, round(t - t0, 4), round(time.perf_counter() - t0, 4), len(times[0])))
            return out
        return feed

    for name in originals:
        setattr(Stream, name, logged(name))
    type(model).embed_frames = logged_embed
    try:
        for decoded_first in (False, True):
            phases, feeds[:] = {}, []
            t0 = time.perf_counter()
            _, wall, busy, idle = gpu_busy(lambda: ask_as_of(model, snapshot, digest, args.video, 299.5, phases,
                                                             decoded_first), gaps=6)
            put(f"ask_at_T_worst_traced{'_decoded_first' if decoded_first else ''}",
                {**phases, "wall_s": wall, "gpu_busy_s": busy, "feeds_in_out_frames": list(feeds),
                 "longest_gpu_idle": idle})
    finally:
        for name, fn in originals.items():
            setattr(Stream, name, fn)
        type(model).embed_frames = embed_frames
    if args.profile:
        path = res.path.with_name(f"{res.path.stem}-profile-feed64-{label}.txt")
        profile_feed(model, path)
        put("profile_written", str(path))
    return logits, answer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--video", required=True)
    add_arguments(ap)
    ap.add_argument("--profile", action="store_true", help="also write the kernel tables of a 64-frame feed")
    ap.add_argument("--batches", default="32,64")
    ap.add_argument("--precisions", default="bfloat16,float8")
    args = ap.parse_args()
    res = Results(out_path(args, "ask_latency"))
    res.put("device", torch.cuda.get_device_name())
    res.put("cpus", os.cpu_count())
    if not os.path.exists(args.video):
        from vidindex.video.synthetic import write_video

        t = time.perf_counter()
        write_video(args.video, 335, fps=30, width=448, height=448, gop=60, texture=True)
        res.put("video_write_s", time.perf_counter() - t)
    res.put("video_mb", os.path.getsize(args.video) / 1e6)
    with sample_frames(args.video, fps=1.0, size=448, end=SNAPSHOT_AT + 0.5) as reader:
        first = list(reader)

    # Decoding alone: the replay's readers with a stream that only counts frames.
    for rep in range(2):
        counter = FrameCounter(SNAPSHOT_AT)
        n, dt = synced(lambda: replay(counter, args.video, fps=1.0, size=448, start_s=SNAPSHOT_AT,
                                      until_s=SNAPSHOT_AT + 299.5, batch=32))
        res.put(f"replay_decode_only_299_s_rep{rep}", {"s": dt, "frames": n})

    outputs = {}
    for precision in args.precisions.split(","):
        # same seed: same weights before rounding; "float8" quantizes bf16 weights
        (model, dt) = synced(lambda: random_model(ModelConfig(), "cuda", dtype=precision))
        res.put(f"{precision}.model_build_s", dt)
        res.put(f"{precision}.kernels", model.kernels.name)
        outputs[precision] = measure(model, precision, args, res, first)
        del model
        torch.cuda.empty_cache()
    if "bfloat16" in outputs and "float8" in outputs:
        (ref, ref_answer), (got, answer) = outputs["bfloat16"], outputs["float8"]
        res.put("float8_vs_bfloat16_logits_rel", float((got - ref).norm() / ref.norm()))
        res.put("float8_vs_bfloat16_same_argmax", bool((got.argmax(-1) == ref.argmax(-1)).all()))
        res.put("float8_vs_bfloat16_same_answer", answer == ref_answer)


if __name__ == "__main__":
    main()
