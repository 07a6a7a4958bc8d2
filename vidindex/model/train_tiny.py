"""Train the self-test model: a tiny InfiniteVL (tiny.selftest_config) on synthetic videos
(selftest.py), written as an official-format checkpoint that `load_model` reads.

    python -m vidindex.model.train_tiny --device cuda --minutes 5.5 --out selftest-model   # 1 GPU
    python -m vidindex.model.train_tiny --smoke                                          # CPU, < 1 min

Deterministic for a seed and device: the data, the initial weights and the order of
everything come from --seed (on CUDA, deterministic algorithms are requested too; --minutes
picks the step count from the first steps' speed and prints it, and training.json records the
command that repeats the run with that count). It prints the loss and, every --eval-every
steps, accuracies on held-out episodes (the caption of each caption window, a question about
the scene now, memory questions with the first scene out of every window layer's reach), then
writes the checkpoint (weights, config, tokenizer, training.json, README.md), evaluates through
the inference path on encoded videos (selftest.evaluate_videos, with a snapshot save and resume
half-way) and writes the README again with those accuracies.

Load it with `load_model(out, frame_size=TINY_FRAME_SIZE)` (56-pixel frames, 4 tokens each).

Time on one H200, measured (2026-12-02, the shipped model): 0.55 s per step of --batch 256
(estimated beforehand from FLOPs and operator counts: 0.1-0.15 s; where the rest goes is not
profiled), so --minutes 5.5 gave 565 steps; held-out accuracy reached 1.0 by step 500. With
the frame bank (20 s), the start and the final evaluation on 16 encoded videos (~40 s) the
whole call took 6.5 minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .selftest import SOURCES, FrameBank, SceneTask, TaskConfig, evaluate, evaluate_videos
from .loading import load_model
from .tiny import SELFTEST_WORDS, TINY_FRAME_SIZE, build_tokenizer, random_model, selftest_config, write_checkpoint
from .training import answer_loss, forward_train, make_trainable

SMOKE = dict(steps=30, batch=4, device="cpu", threads=1, eval_every=15, eval_batches=1, lr=3e-3, warmup=5,
             max_frames=16, bank_times=2, sources=1, video_eval=0, minutes=None)
PROBE_STEPS = 20  # steps timed before --minutes sets --steps (all inside the warm-up)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m vidindex.model.train_tiny", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None, help="checkpoint directory (default: none written with --smoke, "
                                               "else ./selftest-model)")
    p.add_argument("--init", default=None,
                   help="a checkpoint to go on training (an earlier run's --out; give another --seed for new "
                        "data); default: new random weights")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--minutes", type=float, default=None,
                   help="set --steps to fit this many minutes of training, timed over the first %d steps "
                        "(the run is then the one --steps N gives: it prints N)" % PROBE_STEPS)
    p.add_argument("--batch", type=int, default=256, help="streams per step")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=200, help="steps of linear warm-up, then cosine decay to 10%%")
    p.add_argument("--max-frames", type=int, default=192, help="longest training video, in frames (1 per second)")
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--eval-batches", type=int, default=8, help="held-out episodes per evaluation")
    p.add_argument("--bank-times", type=int, default=4, help="timestamps rendered per look and source")
    p.add_argument("--sources", type=int, default=4, help="source video sizes in the frame bank (1-4)")
    p.add_argument("--video-eval", type=int, default=16, help="encoded videos for the final evaluation (0: none)")
    p.add_argument("--video-seconds", type=float, default=180.0)
    p.add_argument("--smoke", action="store_true",
                   help="a CPU check in < 1 min, these defaults: %s" % ", ".join(f"{k}={v}" for k, v in SMOKE.items()))
    args = p.parse_args(argv)
    if args.smoke:  # its settings replace the defaults; flags given still win
        p.set_defaults(**SMOKE)
        args = p.parse_args(argv)
    if args.minutes is not None and args.warmup < PROBE_STEPS:
        p.error(f"--minutes needs --warmup >= {PROBE_STEPS} (the timed steps must not depend on --steps)")
    if args.out is None and not args.smoke:
        args.out = "selftest-model"
    return args


def seed_everything(seed: int, device: torch.device, threads: int | None = None) -> None:
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


def learning_rate(step: int, args) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    done = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * done)))


def build(args):
    """(model ready to train, tokenizer, config) for the arguments: new random weights, or
    --init's to train on."""
    device = torch.device(args.device)
    seed_everything(args.seed, device, args.threads)
    if args.init:
        model = load_model(args.init, device, torch.float32, TINY_FRAME_SIZE, kernels="reference")
        tokenizer, cfg = model.tokenizer, model.config
    else:
        tokenizer = build_tokenizer(SELFTEST_WORDS, lowercase=True)
        cfg = selftest_config(tokenizer)
        model = random_model(cfg, device, dtype=torch.float32, seed=args.seed, frame_size=TINY_FRAME_SIZE,
                             kernels="reference")
        model.tokenizer = tokenizer
    torch.backends.cuda.matmul.allow_tf32 = True  # training on CUDA: TF32 matmuls (no effect on CPU)
    return make_trainable(model), tokenizer, cfg


def train(args, say=print) -> dict:
    """The whole run: train, write the checkpoint (if --out), then evaluate on encoded videos
    and write again with those accuracies (a run cut short still leaves a checkpoint)."""
    started = time.time()
    model, tokenizer, cfg = build(args)
    say(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters on {args.device}, "
        f"{model.tokens_per_frame} tokens per {TINY_FRAME_SIZE}-pixel frame, window {cfg.sliding_window}")
    result = fit(model, args, say)
    if args.out:
        write_selftest_checkpoint(model, tokenizer, cfg, args, result)
        say(f"wrote {args.out}")
    if args.video_eval:
        with torch.no_grad(), tempfile.TemporaryDirectory() as videos:
            result["videos"] = evaluate_videos(_for_inference(model), videos, videos=args.video_eval,
                                               seconds=args.video_seconds, seed=args.seed + 2)
        say(f"encoded videos ({args.video_eval} x {args.video_seconds:.0f} s, snapshot resume half-way): "
            f"caption {result['videos']['caption']:.3f}, memory {result['videos']['memory']:.3f}")
    result["total_seconds"] = time.time() - started
    if args.out:
        write_selftest_checkpoint(model, tokenizer, cfg, args, result)
    return result


def fit(model, args, say=print) -> dict:
    """The training loop on episodes from a frame bank, with evaluations on held-out episodes."""
    t0 = time.time()
    sources = SOURCES[:args.sources]
    bank = FrameBank.render(TINY_FRAME_SIZE, sources, times=args.bank_times, seed=args.seed).to(model.device)
    # held out: other timestamp digits than the training frames
    held_out = FrameBank.render(TINY_FRAME_SIZE, sources, times=1, seed=args.seed + 1000).to(model.device)
    say(f"frame bank: {tuple(bank.frames.shape)} rendered in {time.time() - t0:.1f} s")
    task = SceneTask(model, TaskConfig(max_frames=args.max_frames))
    rng, eval_rng = np.random.default_rng(args.seed), np.random.default_rng(args.seed + 1)
    eval_set = [task.episode(held_out, eval_rng, args.batch) for _ in range(args.eval_batches)]
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    history, evals, stopped_early = [], [], False
    t0 = time.time()
    step = 0
    while step < args.steps:
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, args)
        ep = task.episode(bank, rng, args.batch)
        loss = answer_loss(forward_train(model, ep.frames, ep.timestamps, ep.branches), ep.branches)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        history.append(loss.item())
        step += 1
        elapsed = time.time() - t0
        if args.minutes is not None and step == PROBE_STEPS:
            args.steps = max(PROBE_STEPS, int(args.minutes * 60 * PROBE_STEPS / elapsed))
            say(f"{elapsed / step:.3f} s/step over {step} steps: --steps {args.steps} fits {args.minutes} minutes")
        elif args.minutes is not None and elapsed > 1.1 * args.minutes * 60 and step < args.steps:
            say(f"stopping at step {step}: over 1.1 x {args.minutes} minutes")
            args.steps, stopped_early = step, True
        if step % 10 == 1 or step == args.steps:
            say(f"step {step:5d}  loss {np.mean(history[-10:]):.4f}  lr {learning_rate(step - 1, args):.2e}  "
                f"{elapsed / step:.3f} s/step")
        if step % args.eval_every == 0 or step == args.steps:
            model.eval()
            metrics = {"step": step, **evaluate(model, eval_set)}
            model.train()
            evals.append(metrics)
            say(f"eval @ {step}: " + _accuracies(metrics))
    seconds = time.time() - t0
    return {"train_seconds": seconds, "seconds_per_step": seconds / max(1, step), "stopped_early": stopped_early,
            "loss_first": history[0], "loss_last10": float(np.mean(history[-10:])), "evals": evals}


def _for_inference(model):
    """The trained model as inference runs it (reference kernels, no gradients), in place."""
    from .kernels import select_kernels

    model.eval().requires_grad_(False)
    model.kernels = select_kernels(model.device, "reference")  # the fast path compiles for minutes
    torch.backends.cuda.matmul.allow_tf32 = False  # inference in float32 proper (build allowed TF32)
    return model


def _accuracies(m: dict) -> str:
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    return (f"caption {fmt(m['caption'])}  now {fmt(m['now'])}  memory_far {fmt(m['memory_far'])}  "
            f"memory_near {fmt(m['memory_near'])}  loss {m['loss']:.4f}")


def write_selftest_checkpoint(model, tokenizer, cfg, args, result: dict) -> Path:
    out = Path(args.out)
    write_checkpoint(out, cfg, dict(model.named_parameters()), tokenizer)
    command = reproduce_command(args)
    record = {"command": command, "args": vars(args), "torch": torch.__version__,
              "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu", **result}
    (out / "training.json").write_text(json.dumps(record, indent=2, default=str))
    last = result["evals"][-1] if result["evals"] else {}
    lines = [
        "# vidindex self-test model",
        "",
        "A tiny InfiniteVL (the same code and checkpoint format as the 4B model; tiny.selftest_config) "
        "trained on synthetic videos whose scenes are known (vidindex.video.synthetic: a background colour, "
        "a shape and its colour, changing every few seconds), so that its outputs can be checked.",
        "",
        "    from vidindex.model import load_model",
        "    model = load_model(path, frame_size=56)   # 56-pixel frames, 4 tokens each; 1 frame/s as trained",
        "",
        "It answers the questions of vidindex.model.selftest.QUESTIONS: the caption prompts with what is on "
        "screen (\"a red circle on a blue background\"), questions about the scene now, and memory questions "
        "about the first scene (\"What colour was the first shape?\"), which only the Gated DeltaNet state "
        "can answer once the first scene is out of reach of the window layers.",
        "",
        "## How it was made",
        "",
        f"    {command}",
        "",
        f"- seed {args.seed}; {args.steps} steps of {args.batch} streams (videos of {TaskConfig.min_frames}-"
        f"{args.max_frames} s at 1 frame/s); {record['device_name']}, torch {torch.__version__}; "
        f"{result['train_seconds'] / 60:.1f} min of training",
        "",
        "## Measured accuracy (exact answers)",
        "",
        f"- held-out episodes ({args.eval_batches} x {args.batch} streams, frames with unseen timestamp digits): "
        + (_accuracies(last) if last else "-"),
    ]
    if "videos" in result:
        v = result["videos"]
        lines.append(f"- encoded videos through the inference path ({v['videos']} H.264 videos of "
                     f"{v['seconds']:.0f} s, "
                     f"sampled at {v['sample_fps']} frame/s, snapshot saved and resumed half-way): "
                     f"caption every 10 s {v['caption']:.3f}, memory questions at the end {v['memory']:.3f} "
                     f"(chance 0.1 for colours, 0.33 for shapes)")
    lines += ["", "memory_far: the first scene was out of reach of every window layer. Details: training.json.", ""]
    (out / "README.md").write_text("\n".join(lines))
    return out


def reproduce_command(args) -> str:
    """The command that repeats this run: every argument that differs from the default, the
    number of steps as run (also when --minutes chose it)."""
    defaults = vars(parse_args([]))
    skip = {"out", "minutes", "smoke", "steps"}
    flags = [f"--steps {args.steps}"]
    flags += [f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in skip and v != defaults[k]]
    return " ".join(["python -m vidindex.model.train_tiny", *flags, f"--out {args.out}"])


def main(argv=None) -> int:
    args = parse_args(argv)
    train(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
