"""Where bench scripts write their records: bench/results/<benchmark>-<date>-<gpu>[-variant].<ext>.

    path = record_path("ask_latency", variant="float8")   # bench/results/ask_latency-2026-12-02-h200-float8.json
    write_record("flex_tiles", {"device": ..., ...})

benchmark is the bench script's name, date today's (YYYY-MM-DD), gpu the short name of the GPU
the run is on (device_short_name). docs/benchmarks.md links the records its figures come from.
"""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"

_VENDOR_WORDS = {"nvidia", "geforce", "tesla", "quadro"}


def device_short_name(name: str | None = None) -> str:
    """"NVIDIA H200" -> "h200", "NVIDIA H100 80GB HBM3" -> "h100", "NVIDIA GeForce RTX 4090" ->
    "rtx4090"; "cpu" when no name is given and there is no CUDA device."""
    if name is None:
        try:
            import torch
        except ImportError:
            return "cpu"
        if not torch.cuda.is_available():
            return "cpu"
        name = torch.cuda.get_device_name()
    words = [w for w in re.split(r"[\s_-]+", name.lower()) if w and w not in _VENDOR_WORDS]
    if not words:
        return "gpu"
    if words[0] in ("rtx", "gtx") and len(words) > 1:
        words[:2] = [words[0] + words[1]]
    return re.sub(r"[^a-z0-9]", "", words[0]) or "gpu"


def record_path(benchmark: str, variant: str | None = None, ext: str = "json", device: str | None = None) -> Path:
    """The path of a record of `benchmark` run today on this machine's GPU (or `device`)."""
    parts = [benchmark, datetime.date.today().isoformat(), device or device_short_name()]
    if variant:
        parts.append(variant)
    return RESULTS_DIR / f"{'-'.join(parts)}.{ext}"


def save(path: str | Path, data) -> Path:
    """Write a record: a dict as indented JSON, a str as it is."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        if isinstance(data, str):
            f.write(data)
        else:
            json.dump(data, f, indent=1)
    return path


def write_record(benchmark: str, data, variant: str | None = None, ext: str = "json") -> Path:
    """save(record_path(benchmark, variant, ext), data)."""
    return save(record_path(benchmark, variant, ext), data)


def add_arguments(parser) -> None:
    """The --out and --variant options every bench script that writes a record takes."""
    parser.add_argument("--out", type=Path,
                        help="the record's path (default: bench/results/<benchmark>-<date>-<gpu>[-variant].<ext>)")
    parser.add_argument("--variant", help="what sets this run apart, appended to the record's name (e.g. cold)")


def out_path(args, benchmark: str, variant: str | None = None, ext: str = "json", device: str | None = None) -> Path:
    """args.out, or the record path from the benchmark name, the script's own variant (if any)
    and --variant."""
    if args.out:
        return Path(args.out)
    return record_path(benchmark, "-".join(v for v in (variant, args.variant) if v) or None, ext, device)
