"""The baseline a user would otherwise run: stock transformers Qwen2.5-VL-3B with a growing KV
cache, fed the frames vidindex indexes, side by side with vidindex's figures.

    python bench/baseline.py [--mode image|video] [--chunk 8] [--limit-s 220] [--gpu-memory-gb G]
                             [--vidindex-fps F] [--vidindex-peak-gb G] [--variant NAME] [--out PATH]
    python bench/baseline.py --smoke --out /tmp/baseline.json   # tiny model, CPU, a few chunks

The model: Qwen2_5_VLForConditionalGeneration built from the released Qwen2.5-VL-3B-Instruct
config (decoder: hidden 2048, 36 layers, 16 heads / 2 KV heads of 128, MLP 11008, M-RoPE
[16, 24, 24]; vision tower: 32 blocks of 1280, windows of 112 px, full attention in blocks
7/15/23/31, merger to 2048) with RANDOM weights (nothing downloaded), bf16 on CUDA, the attention
implementation transformers picks (sdpa where flash-attn is not installed). One video, one
DynamicCache that grows with it: every forward appends `--chunk` frames (default 8, 1 sampled frame
per second of video, 448x448 uint8) as vision tokens through the model's own vision path
(pixel_values + image_grid_thw, or pixel_values_videos + video_grid_thw), with logits for the last
token only. Pixel values and grids are computed here with the Qwen2-VL image processor's math
(frames already 448x448 = a multiple of 28, so smart_resize keeps them; /255, CLIP mean/std,
patch 14, merge 2, temporal patch 2) on the model's device, inside the timed step, from frames on
the host as a decoder hands them over. The 3-D M-RoPE positions follow get_rope_index's rule and
continue across chunks (transformers only computes them for a whole prompt at once); the first
chunk's are checked against the installed get_rope_index.

Tokens per frame at 448x448: 32x32 patches of 14 px, merged 2x2 -> 256 tokens per temporal patch.
  --mode image (default; vidindex's mode, so the same tokens per frame as vidindex): each frame
      an image, duplicated to fill the temporal patch of 2 -> 256 tokens per frame, plus
      <|vision_start|> and <|vision_end|> -> 258 cache tokens per frame;
  --mode video: each chunk one video, 2 frames per temporal patch -> 128 tokens per frame, plus
      2 per chunk.
KV cache: 2 (K and V) x 36 layers x 2 heads x 128 x 2 B = 36,864 B per token: 9.5 MB per frame in
image mode, 34 GB per video-hour at 1 frame/s.

Prints and records (bench/results/baseline-<date>-<gpu>[-video][-variant].json, records.py), the
record rewritten as the figures come:
  - at 1, 5, 10, 20, 30, ... minutes of video: frames/s over the last 32 frames and since the
    start, context tokens, GPU memory (allocated, peak), and the ratios to vidindex's figures;
  - the video length at which it runs out of GPU memory (torch.cuda.OutOfMemoryError), or "not
    reached within the limit" with a projection (marked as one) from the measured memory per
    frame and time per chunk;
  - the stock vision tower's ms per frame at `--chunk` frames per call.
vidindex's figures: --vidindex-fps / --vidindex-peak-gb, or else the newest record in
bench/results holding them (1 stream, bf16, 32 frames per feed: stream_throughput's
feed_fps_streams1_perfeed32 / peak_gb_streams1_perfeed32, ask_latency's
bfloat16.feed_fps_32_per_feed; records of this GPU first), and the newest e2e_index record's
video-hours per GPU-hour for context. vidindex's state is constant (133.9 MB per stream), so its
video length has no memory bound.

The default run should take about 4-4.5 minutes on an H200 (model build + warm-up + --limit-s 220
of streaming). 220 s of streaming is unlikely to fill 141 GB (~13,000 frames of KV cache in image
mode), hence the projection; --gpu-memory-gb caps the memory this process may use, to measure the
limit of a smaller GPU (e.g. 24 for an RTX 4090, 80 for an H100). Note the feeds differ: the
baseline takes 8 frames per forward by default (--chunk), vidindex's figure is of 32 per feed.
"""

from __future__ import annotations

import argparse
import copy
import glob
import inspect
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import torch
from gpu_timing import Results
from records import RESULTS_DIR, add_arguments, device_short_name, out_path

# The released Qwen/Qwen2.5-VL-3B-Instruct config.json (flat, as from_pretrained reads it).
QWEN25_VL_3B = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"],
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "vision_token_id": 151654,
    "image_token_id": 151655,
    "video_token_id": 151656,
    "hidden_act": "silu",
    "hidden_size": 2048,
    "initializer_range": 0.02,
    "intermediate_size": 11008,
    "max_position_embeddings": 128000,
    "max_window_layers": 70,
    "model_type": "qwen2_5_vl",
    "num_attention_heads": 16,
    "num_hidden_layers": 36,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "tie_word_embeddings": True,
    "use_cache": True,
    "use_sliding_window": False,
    "vision_config": {
        "depth": 32,
        "hidden_act": "silu",
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "in_chans": 3,
        "out_hidden_size": 2048,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "spatial_patch_size": 14,
        "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
        "tokens_per_second": 2,
        "temporal_patch_size": 2,
    },
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "vocab_size": 151936,
}

# --smoke: the same structure, tiny (CPU, seconds). head_dim 16 -> mrope_section sums to 8.
TINY = copy.deepcopy(QWEN25_VL_3B)
TINY.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=512, bos_token_id=1, eos_token_id=2, vision_start_token_id=500,
            vision_end_token_id=501, vision_token_id=502, image_token_id=503, video_token_id=504,
            rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]})
TINY["vision_config"].update(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                             fullatt_block_indexes=[1])

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_MARKS_MIN = [1, 5, 10, 20, 30, 40, 50, 60] + list(range(90, 24 * 60 + 1, 30))
RECENT_FRAMES = 32  # "frames/s now": over the chunks holding the last 32 frames
PREFIX_TOKENS = 16  # a system/user prompt before the first frame


# ---- inputs: the processor's math, positions, token ids


def pixel_values(frames: torch.Tensor, mode: str, vc: dict, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [n, H, W, 3] (H, W multiples of patch x merge) -> (pixel values [patches, 3*tp*p*p],
    grid_thw [images or 1, 3]), as Qwen2VLImageProcessor / its video processor lay them out."""
    p, m, tp = vc["patch_size"], vc["spatial_merge_size"], vc["temporal_patch_size"]
    n, h, w, _ = frames.shape
    gh, gw = h // p, w // p
    x = frames.permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    x = (x - mean) / std
    if mode == "image":  # each frame its own image, repeated to fill the temporal patch
        x = x[:, None].expand(n, tp, 3, h, w)
        grid = torch.tensor([[1, gh, gw]] * n)
    else:  # one video: consecutive frames share a temporal patch
        if n % tp:
            raise ValueError(f"video mode needs a multiple of {tp} frames per chunk, got {n}")
        x = x.reshape(n // tp, tp, 3, h, w)
        grid = torch.tensor([[n // tp, gh, gw]])
    t = x.shape[0]
    x = x.reshape(t, tp, 3, gh // m, m, p, gw // m, m, p).permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(t * gh * gw, 3 * tp * p * p).to(dtype), grid.to(x.device)


def chunk_tokens(cfg: dict, grid: torch.Tensor, mode: str, prefix: int) -> tuple[list[int], list]:
    """Token ids of one chunk ([prefix text] + per image or video: vision_start, pads, vision_end)
    and its layout [("text", n) | ("vision", t, h, w)] in merged-grid units."""
    m = cfg["vision_config"]["spatial_merge_size"]
    pad = cfg["image_token_id"] if mode == "image" else cfg["video_token_id"]
    ids, layout = list(range(100, 100 + prefix)), [("text", prefix)] if prefix else []
    for t, h, w in grid.tolist():
        n = t * (h // m) * (w // m)
        ids += [cfg["vision_start_token_id"]] + [pad] * n + [cfg["vision_end_token_id"]]
        layout += [("text", 1), ("vision", t, h // m, w // m), ("text", 1)]
    return ids, layout


def chunk_positions(layout, start: int, mode: str, cfg: dict, fps: float) -> tuple[torch.Tensor, int]:
    """3-D M-RoPE positions [3, L] of a chunk starting at position `start`, by get_rope_index's rule
    (text: consecutive; a vision block at s: (s + t_k, s + i, s + j), t_k = 0 for images and
    floor(k * second_per_grid_t * tokens_per_second) for videos; the next token at max + 1), and
    the position after it."""
    vc = cfg["vision_config"]
    interval = vc["temporal_patch_size"] / fps * vc["tokens_per_second"]  # second_per_grid_t * tps
    pieces, pos = [], start
    for item in layout:
        if item[0] == "text":
            pieces.append(torch.arange(pos, pos + item[1]).view(1, -1).expand(3, -1))
            pos += item[1]
        else:
            _, t, h, w = item
            tt = (torch.arange(t) * interval).long() if mode == "video" else torch.zeros(t, dtype=torch.long)
            gt, gy, gx = torch.meshgrid(tt, torch.arange(h), torch.arange(w), indexing="ij")
            block = torch.stack([gt, gy, gx]).reshape(3, -1) + pos
            pieces.append(block)
            pos = int(block.max()) + 1
    return torch.cat(pieces, dim=1), pos


def check_positions(model, ids, grid, mode, positions, second_per_grid_t: float) -> bool | None:
    """The vision tokens' positions of the first chunk against the installed get_rope_index
    (None where its signature is not the one known here)."""
    try:
        ids_t = torch.tensor([ids], device=positions.device)
        pad = model.config.image_token_id if mode == "image" else model.config.video_token_id
        types = (ids_t == pad).int() * (1 if mode == "image" else 2)
        kw = {"image_grid_thw": grid} if mode == "image" else {
            "video_grid_thw": grid, "second_per_grid_ts": torch.tensor([second_per_grid_t])}
        ref, _ = model.model.get_rope_index(ids_t, mm_token_type_ids=types, **kw)
    except (TypeError, AttributeError) as e:
        print(f"positions: not checked against get_rope_index ({type(e).__name__}: {e})", flush=True)
        return None
    vision = (ids_t[0] == pad).to(positions.device)
    return bool(torch.equal(ref[:, 0, vision].cpu(), positions[:, vision].cpu()))


# ---- vidindex's figures


def _dig(d: dict, key: str):
    if key in d:
        return d[key]
    head, _, rest = key.partition(".")
    return _dig(d[head], rest) if rest and isinstance(d.get(head), dict) else None


def newest_figure(results_dir: Path, candidates, gpu: str):
    """(value, record path, key) of the newest record (date in its name) holding one of
    `candidates` [(glob, key)], records of `gpu` first; None if none holds one."""
    found = []
    for pattern, key in candidates:
        for path in glob.glob(str(results_dir / pattern)):
            try:
                value = _dig(json.loads(Path(path).read_text()), key)
            except (OSError, ValueError):
                continue
            if isinstance(value, (int, float)):
                date = re.search(r"\d{4}-\d{2}-\d{2}", Path(path).name)
                found.append(((f"-{gpu}" in Path(path).name), date.group() if date else "", path, key, value))
    if not found:
        return None
    same_gpu, date, path, key, value = max(found)
    return float(value), os.path.relpath(path), key


def vidindex_reference(args, gpu: str) -> dict:
    ref = {}
    if args.vidindex_fps:
        ref["feed_fps"] = {"value": args.vidindex_fps, "source": "--vidindex-fps"}
    else:
        hit = newest_figure(args.vidindex_results, [
            ("stream_throughput-*.json", "feed_fps_streams1_perfeed32"),
            ("ask_latency-*.json", "bfloat16.feed_fps_32_per_feed")], gpu)
        if hit:
            ref["feed_fps"] = {"value": hit[0], "source": f"{hit[1]}: {hit[2]}"}
    if args.vidindex_peak_gb:
        ref["peak_gb"] = {"value": args.vidindex_peak_gb, "source": "--vidindex-peak-gb"}
    else:
        hit = newest_figure(args.vidindex_results, [("stream_throughput-*.json", "peak_gb_streams1_perfeed32")], gpu)
        if hit:
            ref["peak_gb"] = {"value": hit[0], "source": f"{hit[1]}: {hit[2]}"}
    hit = newest_figure(args.vidindex_results, [("*.json", "bfloat16.snapshot_mb"), ("*.json", "snapshot_mb")], gpu)
    if hit:
        ref["state_mb"] = {"value": hit[0], "source": f"{hit[1]}: {hit[2]}"}
    for key, name in (("video_hours_per_gpu_hour", "e2e_video_hours_per_gpu_hour"),
                      ("model_only.video_hours_per_gpu_hour", "e2e_model_only_video_hours_per_gpu_hour")):
        hit = newest_figure(args.vidindex_results, [("e2e_index-*.json", key)], gpu)
        if hit:
            ref[name] = {"value": hit[0], "source": f"{hit[1]}: {hit[2]}"}
    return ref


# ---- the model


def build_model(cfg: dict, device: str, dtype, attn: str | None):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    config = Qwen2_5_VLConfig(**copy.deepcopy(cfg))
    kw = {"dtype": dtype}
    if attn:
        kw["attn_implementation"] = attn
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, **kw)
    return model.eval()


def new_cache(model):
    from transformers import DynamicCache

    try:
        return DynamicCache(config=model.config.get_text_config())
    except TypeError:  # older signatures
        return DynamicCache()


def cache_keyword(model) -> str:
    """transformers 5.24 names the cache argument `cache` (`past_key_values` deprecated), 5.17
    `past_key_values`."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


# ---- measuring


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def gb(b):
    return None if b is None else b / 1e9


def fit_line(x, y):
    """(intercept, slope) of a least-squares line, or None with fewer than 2 distinct x."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or np.ptp(x) == 0:
        return None
    slope, intercept = np.polyfit(x, y, 1)
    return float(intercept), float(slope)


def minutes(frames, fps):
    return frames / fps / 60


def project_oom(chunks, capacity: float, chunk: int, cache_tokens_per_frame: float, kv_bytes_per_frame: float,
                fps: float) -> dict:
    """Where a run that stopped before running out of memory would have: a projection from the
    measured rows [frames, context tokens, seconds, allocated GB, peak GB] per chunk, not a
    measurement. Memory per frame: the steeper of the peak's and the allocation's growth over
    the second half of the run (the KV cache's own where neither grew); time per chunk: a line in
    the context length fitted over the last three quarters, summed over the chunks to come."""
    fed, context = chunks[-1][0], chunks[-1][1]
    half = chunks[len(chunks) // 2:]
    peak_fit = fit_line([c[0] for c in half], [c[4] * 1e9 for c in half])
    alloc_fit = fit_line([c[0] for c in half], [c[3] * 1e9 for c in half])
    slopes = [f[1] for f in (peak_fit, alloc_fit) if f and f[1] > 0]
    per_frame = max(slopes) if slopes else kv_bytes_per_frame
    frames_more = max(0.0, (capacity - chunks[-1][4] * 1e9) / per_frame)
    proj = {"capacity_gb": capacity / 1e9, "bytes_per_frame_used": per_frame,
            "peak_bytes_per_frame": peak_fit[1] if peak_fit else None,
            "allocated_bytes_per_frame": alloc_fit[1] if alloc_fit else None,
            "kv_bytes_per_frame": kv_bytes_per_frame,
            "oom_video_min": minutes(fed + frames_more, fps)}
    rest = chunks[len(chunks) // 4:]
    time_fit = fit_line([c[1] for c in rest], [c[2] for c in rest])
    if time_fit:
        a, b = time_fit
        n = frames_more // chunk
        step = cache_tokens_per_frame * chunk
        proj["wall_s_to_reach"] = max(0.0, n * a + b * (n * context + step * n * (n + 1) / 2))
        proj["chunk_s_fit"] = {"intercept_s": a, "s_per_context_token": b}
    return proj


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    ap.add_argument("--smoke", action="store_true", help="tiny model on the CPU, a few chunks (the CPU test)")
    ap.add_argument("--mode", choices=("image", "video"), default="image",
                    help="image: 256 tokens per 448x448 frame (vidindex's mode); video: 2 frames per temporal patch")
    ap.add_argument("--chunk", type=int, default=None, help="frames per forward (default 8; smoke 4)")
    ap.add_argument("--size", type=int, default=None, help="frame side in pixels (default 448; smoke 56)")
    ap.add_argument("--fps", type=float, default=1.0, help="sampled frames per second of video")
    ap.add_argument("--limit-s", type=float, default=None,
                    help="wall-clock limit of the streaming loop (default 220; smoke 60)")
    ap.add_argument("--max-minutes", type=float, default=None, help="stop after this much video (smoke: 0.4)")
    ap.add_argument("--marks", default=None,
                    help="video minutes to report at, comma-separated (default 1,5,10,20,30,...; smoke 0.1,0.2,0.3)")
    ap.add_argument("--gpu-memory-gb", type=float, default=None,
                    help="cap this process's GPU memory (set_per_process_memory_fraction): a smaller GPU's limit")
    ap.add_argument("--attn", default=None, help="attn_implementation (default: what transformers picks)")
    ap.add_argument("--device", default=None, help="default cuda; smoke cpu")
    ap.add_argument("--vidindex-fps", type=float, help="vidindex feed frames/s to compare with (default: records)")
    ap.add_argument("--vidindex-peak-gb", type=float, help="vidindex peak GPU memory, GB (default: records)")
    ap.add_argument("--vidindex-results", type=Path, default=RESULTS_DIR, help="where to look for vidindex records")
    args = ap.parse_args(argv)

    smoke = args.smoke
    cfg = TINY if smoke else QWEN25_VL_3B
    vc = cfg["vision_config"]
    device = args.device or ("cpu" if smoke else "cuda")
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    chunk = args.chunk or (4 if smoke else 8)
    size = args.size or (56 if smoke else 448)
    limit_s = args.limit_s if args.limit_s is not None else (60.0 if smoke else 220.0)
    max_minutes = args.max_minutes if args.max_minutes is not None else (0.4 if smoke else None)
    marks = [float(m) for m in args.marks.split(",")] if args.marks else (
        [0.1, 0.2, 0.3] if smoke else DEFAULT_MARKS_MIN)
    unit = vc["patch_size"] * vc["spatial_merge_size"]
    if size % unit:
        ap.error(f"--size must be a multiple of {unit} (patch x merge)")
    if args.mode == "video" and chunk % vc["temporal_patch_size"]:
        ap.error(f"video mode needs --chunk a multiple of {vc['temporal_patch_size']}")
    is_cuda = device.startswith("cuda")
    if is_cuda and not torch.cuda.is_available():
        ap.error("no CUDA device (use --smoke for the CPU)")

    gpu = device_short_name() if is_cuda else "cpu"
    variant = "-".join(v for v in ("smoke" if smoke else None, None if args.mode == "image" else args.mode) if v)
    res = Results(out_path(args, "baseline", variant=variant or None, device=gpu))
    import transformers

    res.put("device", torch.cuda.get_device_name() if is_cuda else "cpu")
    res.put("versions", {"torch": torch.__version__, "transformers": transformers.__version__})
    res.put("smoke", smoke)

    # tokens and bytes per frame, from the config
    heads_kv, layers = cfg["num_key_value_heads"], cfg["num_hidden_layers"]
    head_dim = cfg["hidden_size"] // cfg["num_attention_heads"]
    kv_bytes_per_token = 2 * layers * heads_kv * head_dim * torch.tensor([], dtype=dtype).element_size()
    grid_side = size // vc["patch_size"]
    merged_per_patch = (grid_side // vc["spatial_merge_size"]) ** 2
    frames_per_temporal_patch = 1 if args.mode == "image" else vc["temporal_patch_size"]
    vision_tokens_per_frame = merged_per_patch / frames_per_temporal_patch
    cache_tokens_per_frame = vision_tokens_per_frame + (2 if args.mode == "image" else 2 / chunk)
    res.put("setup", {
        "mode": args.mode, "frame_size": size, "frames_per_forward": chunk, "sampled_fps": args.fps,
        "patches_per_frame": grid_side ** 2, "merged_tokens_per_temporal_patch": merged_per_patch,
        "frames_per_temporal_patch": frames_per_temporal_patch,
        "vision_tokens_per_frame": vision_tokens_per_frame, "cache_tokens_per_frame": cache_tokens_per_frame,
        "kv_bytes_per_token": kv_bytes_per_token,
        "kv_bytes_per_frame": kv_bytes_per_token * cache_tokens_per_frame,
        "kv_gb_per_video_hour": kv_bytes_per_token * cache_tokens_per_frame * args.fps * 3600 / 1e9,
        "limit_s": limit_s, "max_minutes": max_minutes, "gpu_memory_gb_cap": args.gpu_memory_gb})
    print(f"tokens per frame: {size}x{size} -> {grid_side}x{grid_side} patches of {vc['patch_size']} px -> "
          f"{merged_per_patch} merged tokens per temporal patch of {vc['temporal_patch_size']}; {args.mode} mode: "
          f"{frames_per_temporal_patch} frame(s) per temporal patch -> {vision_tokens_per_frame:g} vision tokens "
          f"per frame ({cache_tokens_per_frame:g} in the cache with vision start/end); KV cache "
          f"{kv_bytes_per_token:,} B per token = {kv_bytes_per_token * cache_tokens_per_frame / 1e6:.2f} MB per "
          f"frame = {kv_bytes_per_token * cache_tokens_per_frame * args.fps * 3600 / 1e9:.1f} GB per video-hour "
          f"at {args.fps:g} frame/s", flush=True)

    ref = vidindex_reference(args, gpu)
    res.put("vidindex", ref)
    v_fps = ref.get("feed_fps", {}).get("value")
    v_peak = ref.get("peak_gb", {}).get("value")
    if v_fps is None:
        print("vidindex frames/s: none given and no record found (--vidindex-fps); no ratios", flush=True)

    # the model
    if is_cuda and args.gpu_memory_gb:
        total = torch.cuda.get_device_properties(torch.device(device)).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.gpu_memory_gb * 1e9 / total), torch.device(device))
    t = time.perf_counter()
    model = build_model(cfg, device, dtype, args.attn)
    sync(device)
    params = sum(p.numel() for p in model.parameters())
    res.put("model", {"build_s": time.perf_counter() - t, "params": params,
                      "weights_gb": sum(p.numel() * p.element_size() for p in model.parameters()) / 1e9,
                      "attn_implementation": model.config._attn_implementation,
                      "vision_attn_implementation": model.config.vision_config._attn_implementation,
                      "dtype": str(dtype).replace("torch.", ""), "weights": "random (seed 0)"})
    cache_kw = cache_keyword(model)

    rng = np.random.default_rng(0)
    pool = rng.integers(0, 256, (64, size, size, 3), dtype=np.uint8)  # decoded frames on the host

    def host_frames(first: int, n: int) -> np.ndarray:
        return pool[(first + np.arange(n)) % len(pool)]

    def inputs(first: int, n: int, start_pos: int, prefix: int):
        frames = torch.from_numpy(host_frames(first, n)).to(device, non_blocking=False)
        px, grid = pixel_values(frames, args.mode, vc, dtype)
        ids, layout = chunk_tokens(cfg, grid, args.mode, prefix)
        pos, next_pos = chunk_positions(layout, start_pos, args.mode, cfg, args.fps)
        kw = {"input_ids": torch.tensor([ids], device=device), "position_ids": pos[:, None, :].to(device)}
        if args.mode == "image":
            kw.update(pixel_values=px, image_grid_thw=grid)
        else:
            kw.update(pixel_values_videos=px, video_grid_thw=grid)
        return kw, ids, grid, next_pos

    def forward(kw, cache):
        return model(**kw, use_cache=True, logits_to_keep=1, **{cache_kw: cache}).logits

    # warm up (kernels, cuBLAS handles) on a throwaway cache, check positions, time the tower alone
    with torch.inference_mode():
        kw, ids, grid, _ = inputs(0, chunk, 0, PREFIX_TOKENS)
        res.put("positions_match_get_rope_index", check_positions(
            model, ids, grid, args.mode, kw["position_ids"][:, 0, :], vc["temporal_patch_size"] / args.fps))
        cache = new_cache(model)
        forward(kw, cache)
        forward(inputs(chunk, chunk, 10**4, 0)[0], cache)
        del cache
        px_key, grid_key = ("pixel_values", "image_grid_thw") if args.mode == "image" else (
            "pixel_values_videos", "video_grid_thw")
        sync(device)
        t = time.perf_counter()
        reps = 3
        for _ in range(reps):
            model.model.visual(kw[px_key].to(model.model.visual.dtype), grid_thw=kw[grid_key])
        sync(device)
        res.put("vision_tower_ms_per_frame", (time.perf_counter() - t) / reps / chunk * 1e3)
    if is_cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base_alloc = torch.cuda.memory_allocated()
        res.put("gpu_memory_before_stream_gb", {"allocated": gb(base_alloc),
                                                 "total": gb(torch.cuda.get_device_properties(0).total_memory)})

    # the stream
    chunks = []  # [frames after, context tokens after, seconds, allocated GB, peak GB]
    mark_i, fed, next_pos, context = 0, 0, 0, 0
    cache = new_cache(model)
    stop, oom = None, None
    start = last_print = time.perf_counter()

    def fps_recent() -> tuple[float, int]:
        """(frames/s, frames) over the last chunks holding RECENT_FRAMES frames (or all so far)."""
        frames, secs, k = 0, 0.0, len(chunks) - 1
        while k >= 0 and frames < RECENT_FRAMES:
            frames += chunk
            secs += chunks[k][2]
            k -= 1
        return frames / secs, frames

    def report_mark(m):
        f_now, over = fps_recent()
        f_avg = fed / sum(c[2] for c in chunks)
        row = {"video_min": minutes(fed, args.fps), "frames": fed, "context_tokens": context,
               "fps_recent": f_now, "fps_recent_over_frames": over, "fps_since_start": f_avg,
               "allocated_gb": chunks[-1][3], "peak_gb": chunks[-1][4], "wall_s": time.perf_counter() - start}
        line = (f"== {m:g} min of video ({fed} frames, {context:,} tokens): {f_now:.2f} frames/s now "
                f"(last {over} frames), {f_avg:.2f} frames/s since the start")
        if is_cuda:
            line += f"; GPU memory {row['allocated_gb']:.2f} GB allocated, peak {row['peak_gb']:.2f} GB"
        if v_fps:
            row["vidindex_fps"] = v_fps
            row["baseline_over_vidindex_fps"] = f_now / v_fps
            line += (f"; vidindex {v_fps:.1f} frames/s: vidindex/baseline {v_fps / f_now:.1f}x "
                     f"(baseline/vidindex {f_now / v_fps:.3f})")
        if v_peak and is_cuda:
            row["baseline_over_vidindex_peak_memory"] = row["peak_gb"] / v_peak
            line += f"; memory {row['peak_gb'] / v_peak:.2f}x vidindex's {v_peak:.2f} GB peak"
        if smoke:
            line += " [smoke: tiny model on the CPU, ratios mean nothing]"
        print(line, flush=True)
        res.put(f"at_{m:g}min", row)
        res.put("chunks", chunks)

    with torch.inference_mode():
        while True:
            if time.perf_counter() - start >= limit_s:
                stop = "time limit"
                break
            if max_minutes is not None and minutes(fed, args.fps) >= max_minutes - 1e-9:
                stop = "max minutes"
                break
            try:
                sync(device)
                t = time.perf_counter()  # from frames on the host: preprocessing, tower, decoder
                kw, _, _, after = inputs(fed, chunk, next_pos, PREFIX_TOKENS if fed == 0 else 0)
                forward(kw, cache)
                sync(device)
                dt = time.perf_counter() - t
            except torch.cuda.OutOfMemoryError as e:
                oom = str(e).split("\n")[0][:300]
            except RuntimeError as e:  # cuBLAS / cuDNN allocation failures surface as RuntimeError
                if "out of memory" not in str(e).lower() and "ALLOC_FAILED" not in str(e):
                    raise
                oom = str(e).split("\n")[0][:300]
            if oom is not None:
                kw = None
                stop = "out of memory"
                break
            fed, next_pos, context = fed + chunk, after, cache.get_seq_length()
            chunks.append([fed, context, dt, gb(torch.cuda.memory_allocated()) if is_cuda else None,
                           gb(torch.cuda.max_memory_allocated()) if is_cuda else None])
            while mark_i < len(marks) and minutes(fed, args.fps) >= marks[mark_i] - 1e-9:
                report_mark(marks[mark_i])
                mark_i += 1
            now = time.perf_counter()
            if now - last_print >= 15:
                last_print = now
                print(f"[stream {now - start:6.0f}s] {minutes(fed, args.fps):.1f} min of video, {context:,} tokens, "
                      f"{fps_recent()[0]:.2f} frames/s now" + (f", {chunks[-1][3]:.1f} GB" if is_cuda else ""),
                      flush=True)

    wall = time.perf_counter() - start
    summary = {"stop": stop, "stream_wall_s": wall, "frames": fed, "video_min": minutes(fed, args.fps),
               "context_tokens": context, "marks_reached": marks[:mark_i]}
    if chunks:
        summary["fps_since_start"] = fed / sum(c[2] for c in chunks)
        summary["fps_last"], summary["fps_last_over_frames"] = fps_recent()
    if oom is not None:
        summary["oom"] = {"at_video_min": minutes(fed, args.fps), "frames_in_cache": fed,
                          "context_tokens": context, "failed_chunk_frames": f"{fed + 1}-{fed + chunk}",
                          "peak_gb": chunks[-1][4] if chunks else None, "error": oom}
        summary["max_video_min"] = minutes(fed, args.fps)
        print(f"== out of GPU memory while adding frames {fed + 1}-{fed + chunk}: the longest video that fit is "
              f"{minutes(fed, args.fps):.1f} min ({fed} frames, {context:,} tokens in the cache)", flush=True)
    else:
        summary["max_video_min"] = None
        print(f"== out of memory: not reached within the limit ({stop}: {wall:.0f} s of streaming, "
              f"{minutes(fed, args.fps):.1f} min of video, {context:,} tokens)", flush=True)
        # a projection from the measured slopes, not a measurement
        if is_cuda and len(chunks) >= 4:
            free, _ = torch.cuda.mem_get_info()
            capacity = args.gpu_memory_gb * 1e9 if args.gpu_memory_gb else free + torch.cuda.memory_reserved()
            proj = project_oom(chunks, capacity, chunk, cache_tokens_per_frame,
                               kv_bytes_per_token * cache_tokens_per_frame, args.fps)
            summary["projection"] = proj
            print(f"   projection (not measured): at {proj['bytes_per_frame_used'] / 1e6:.2f} MB of GPU memory per "
                  f"frame, {capacity / 1e9:.0f} GB would run out at ~{proj['oom_video_min']:.0f} min of video"
                  + (f", after ~{proj['wall_s_to_reach'] / 3600:.1f} h of streaming at the measured rate"
                     if "wall_s_to_reach" in proj else ""), flush=True)
    res.put("summary", summary)
    res.put("chunks", chunks)

    # side by side
    side = {}
    if chunks and v_fps:
        side["fps_ratio_baseline_over_vidindex_last"] = summary["fps_last"] / v_fps
        side["fps_ratio_baseline_over_vidindex_since_start"] = summary["fps_since_start"] / v_fps
    if chunks and is_cuda and v_peak:
        side["peak_memory_ratio_baseline_over_vidindex"] = chunks[-1][4] / v_peak
    side["max_video_min_baseline"] = summary["max_video_min"] if oom else (
        f"not reached within the limit (> {minutes(fed, args.fps):.1f} min)")
    side["max_video_min_vidindex"] = "no memory bound (constant state per stream)"
    e2e = ref.get("e2e_video_hours_per_gpu_hour", {}).get("value")
    if chunks and e2e:  # at 1 frame/s, video-hours per GPU-hour = frames/s
        side["fps_ratio_baseline_over_vidindex_e2e_last"] = summary["fps_last"] / (e2e * args.fps)
    res.put("side_by_side", side)
    print("side by side:", flush=True)
    if chunks:
        print(f"  frames/s at {minutes(fed, args.fps):.1f} min: baseline {summary['fps_last']:.2f}"
              + (f", vidindex {v_fps:.1f} ({v_fps / summary['fps_last']:.1f}x)" if v_fps else ""), flush=True)
    if chunks and is_cuda:
        kv_mb = kv_bytes_per_token * cache_tokens_per_frame / 1e6
        print(f"  peak GPU memory: baseline {chunks[-1][4]:.2f} GB (growing {kv_mb:.2f} MB of KV per frame)" + (f", vidindex {v_peak:.2f} GB (constant)" if v_peak else ""), flush=True)
    if chunks and e2e:
        print(f"  for context: `vidindex index` end to end (decode, storage, captions, 4 streams) "
              f"{e2e * args.fps:.1f} frames/s: {e2e * args.fps / summary['fps_last']:.1f}x this baseline's "
              f"model-only rate", flush=True)
    longest = f"{summary['max_video_min']:.1f} min (out of memory after it)" if oom else side["max_video_min_baseline"]
    print(f"  longest video: baseline {longest}; vidindex {side['max_video_min_vidindex']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
