"""Load InfiniteVL checkpoints by their official tensor names.

Accepted on-disk layouts (both seen for Qwen2.5-VL-family checkpoints):
  legacy:  model.embed_tokens..., model.layers.N..., model.norm..., visual...
  nested:  model.language_model.<same>, model.visual.<same>
`lm_head.weight` is ignored when the embeddings are tied. Loading is strict: a missing or
unexpected tensor, or a shape mismatch, is an error that names the tensor.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import torch
from safetensors import safe_open

from .config import ModelConfig
from .errors import CheckpointError
from .float8 import quantize_float8
from .infinitevl import InfiniteVL
from .kernels import select_kernels
from .prompts import check_special_tokens
from .vision import pad_mlp_width, reset_rotary_buffers

log = logging.getLogger(__name__)

_NESTED_TEXT = re.compile(r"^model\.language_model\.")
_NESTED_VISION = re.compile(r"^model\.visual\.")


def canonical_name(name: str) -> str:
    """Checkpoint tensor name -> this model's parameter name (the legacy layout)."""
    name = _NESTED_TEXT.sub("model.", name)
    return _NESTED_VISION.sub("visual.", name)


def resolve_checkpoint(path_or_hub_id: str | Path, revision: str | None = None) -> Path:
    """A local directory, or a Hugging Face hub id fetched (weights, config, tokenizer) to the cache."""
    path = Path(path_or_hub_id).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path_or_hub_id}: a checkpoint must be a directory, not a file")
    looks_like_hub_id = re.fullmatch(r"[\w.-]+/[\w.-]+", str(path_or_hub_id)) is not None
    if not looks_like_hub_id:
        raise CheckpointError(f"{path_or_hub_id}: no such checkpoint directory")
    from huggingface_hub import snapshot_download

    try:
        local = snapshot_download(
            str(path_or_hub_id), revision=revision,
            allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"],
        )
    except Exception as e:  # network, auth, not found: say which id and why
        raise CheckpointError(f"{path_or_hub_id}: could not fetch from the hub ({type(e).__name__}: {e})") from None
    return Path(local)


def checkpoint_files(directory: Path) -> list[Path]:
    index = directory / "model.safetensors.index.json"
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as e:
            raise CheckpointError(f"{index}: unreadable index ({e})") from None
        return [directory / f for f in sorted(set(weight_map.values()))]
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{directory}: no *.safetensors files")
    return files


def read_tensor_shapes(files: list[Path]) -> dict[str, tuple[tuple[int, ...], Path]]:
    """canonical name -> (shape, file), without reading tensor data."""
    out: dict[str, tuple[tuple[int, ...], Path]] = {}
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as handle:
                for name in handle.keys():
                    shape = tuple(handle.get_slice(name).get_shape())
                    out[canonical_name(name)] = (shape, f)
        except FileNotFoundError:
            raise CheckpointError(f"{f}: listed in the index but missing") from None
        except Exception as e:
            raise CheckpointError(f"{f}: not a readable safetensors file ({e})") from None
    return out


def check_names_and_shapes(model: InfiniteVL, shapes: dict[str, tuple[int, ...]], source: str) -> None:
    """Strict comparison of checkpoint tensors (canonical names) with the model's parameters."""
    shapes = dict(shapes)
    if model.config.tie_word_embeddings:
        shapes.pop("lm_head.weight", None)
    params = {n: tuple(p.shape) for n, p in model.named_parameters()}
    missing = sorted(set(params) - set(shapes))
    unexpected = sorted(set(shapes) - set(params))
    wrong = [f"{n}: checkpoint {list(shapes[n])}, model {list(params[n])}" for n in sorted(set(params) & set(shapes)) if shapes[n] != params[n]]
    problems = []
    if missing:
        problems.append(f"missing tensors: {', '.join(missing[:10])}" + (f" (+{len(missing) - 10} more)" if len(missing) > 10 else ""))
    if unexpected:
        problems.append(f"unexpected tensors: {', '.join(unexpected[:10])}" + (f" (+{len(unexpected) - 10} more)" if len(unexpected) > 10 else ""))
    if wrong:
        problems.append("shape mismatch: " + "; ".join(wrong[:10]))
    if problems:
        raise CheckpointError(f"{source}: checkpoint does not match the model config: " + " | ".join(problems))


def build_empty(cfg: ModelConfig, frame_size: int = 448) -> InfiniteVL:
    """The network on the meta device: shapes only, no memory."""
    with torch.device("meta"):
        return InfiniteVL(cfg, frame_size)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def finish_model(model: InfiniteVL, device, dtype: torch.dtype | str | None = None,
                 kernels: str | None = None) -> InfiniteVL:
    """Make a model whose weights are in place (a checkpoint's or random) ready to run, in place:
    cast to dtype, rotary tables rebuilt on the device, no gradients, the vision MLP padded to
    its fast width, float8 linear layers for dtype "float8", kernels chosen for the device.
    dtype defaults to bf16 on CUDA, else fp32 (also the dtype of everything float8 leaves)."""
    device = torch.device(device)
    float8 = dtype == "float8"
    if float8 or dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    elif isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    model.to(dtype)
    reset_rotary_buffers(model.visual, device)
    model.requires_grad_(False).eval()
    pad_mlp_width(model.visual)
    if float8:
        quantize_float8(model)
    model.kernels = select_kernels(device, kernels)
    return model


def load_model(
    path_or_hub_id: str | Path,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    frame_size: int = 448,
    kernels: str | None = None,
    revision: str | None = None,
) -> InfiniteVL:
    """Load weights, config and tokenizer. Defaults: CUDA + bf16 when a GPU is there, else CPU + fp32.

    dtype "float8": the linear layers' weights and matmuls in float8 (vidindex.model.float8),
    everything else in the default dtype."""
    directory = resolve_checkpoint(path_or_hub_id, revision)
    device = torch.device(device) if device is not None else default_device()
    cfg = ModelConfig.from_json(directory / "config.json")
    if not cfg.tie_word_embeddings:
        raise CheckpointError(f"{path_or_hub_id}: untied lm_head is not supported (InfiniteVL ties it)")
    model = build_empty(cfg, frame_size)
    found = read_tensor_shapes(checkpoint_files(directory))
    check_names_and_shapes(model, {n: s for n, (s, _) in found.items()}, str(path_or_hub_id))

    model.to_empty(device=device)
    params = dict(model.named_parameters())
    by_file: dict[Path, list[str]] = {}
    for name, (_, f) in found.items():
        if name in params:
            by_file.setdefault(f, []).append(name)
    raw_names = {}
    for f in by_file:
        with safe_open(str(f), framework="pt") as handle:
            raw_names = {canonical_name(n): n for n in handle.keys()}
            with torch.no_grad():
                for name in by_file[f]:
                    params[name].copy_(handle.get_tensor(raw_names[name]))
    finish_model(model, device, dtype, kernels)

    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    try:
        hf_logging.set_verbosity_error()  # it warns about the unknown model type in config.json
        model.tokenizer = AutoTokenizer.from_pretrained(str(directory))
    except Exception as e:
        raise CheckpointError(f"{path_or_hub_id}: tokenizer could not be loaded ({e})") from None
    check_special_tokens(model.tokenizer, cfg, str(path_or_hub_id))
    model.model_id = str(path_or_hub_id)
    log.info("loaded %s on %s (%s, kernels %s)", path_or_hub_id, device, model.precision, model.kernels.name)
    return model
