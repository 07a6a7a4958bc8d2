"""What the precisions cost on a trained model: the self-test model's caption and memory accuracy
through the inference path (selftest.evaluate_videos: encoded H.264 videos, sampled, streamed,
saved to a snapshot and resumed half-way) in float32, bfloat16 and float8, on the same videos.

    python bench/selftest_precision.py                                   # the packaged model, GPU
    python bench/selftest_precision.py --model selftest-model --dtypes float32 bfloat16 --videos 4

float8 needs a CUDA GPU with float8 matmuls (Hopper or newer); it is skipped elsewhere.
Reference kernels on every row, so the dtype is the only thing that changes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from records import add_arguments, device_short_name, out_path, save  # noqa: E402

from vidindex.model import load_model  # noqa: E402
from vidindex.model.selftest import evaluate_videos  # noqa: E402
from vidindex.model.tiny import SELFTEST_MODEL_DIR, TINY_FRAME_SIZE  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(SELFTEST_MODEL_DIR), help="checkpoint directory (default: the packaged one)")
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16", "float8"])
    p.add_argument("--videos", type=int, default=16)
    p.add_argument("--seconds", type=float, default=180.0)
    p.add_argument("--seed", type=int, default=7, help="of the evaluation videos (training used others)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_arguments(p)
    args = p.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory() as videos:
        for dtype in args.dtypes:
            if dtype == "float8" and (args.device != "cuda" or torch.cuda.get_device_capability() < (8, 9)):
                print(f"{dtype}: skipped (needs a CUDA GPU with float8 matmuls)")
                continue
            model = load_model(args.model, args.device, dtype, TINY_FRAME_SIZE, kernels="reference")
            t0 = time.time()
            with torch.no_grad():
                got = evaluate_videos(model, videos, videos=args.videos, seconds=args.seconds, seed=args.seed)
            got = {"dtype": dtype, **got, "eval_seconds": round(time.time() - t0, 1)}
            rows.append(got)
            print(f"{dtype:9s} caption {got['caption']:.3f} ({got['captions_asked']} windows)  "
                  f"memory {got['memory']:.3f}  ({got['eval_seconds']:.0f} s)")
            del model
    gpu = device_short_name() if args.device == "cuda" else "cpu"
    path = out_path(args, "selftest_precision", device=gpu)
    save(path, {"device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
                "model": args.model, "videos": args.videos, "video_seconds": args.seconds, "seed": args.seed,
                "command": " ".join(["python", "bench/selftest_precision.py", *(argv or sys.argv[1:])]),
                "rows": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
