"""A complete tiny InfiniteVL checkpoint in the official format, for tests and the demo.

Same architecture and tensor names as the 4B model at toy sizes: 6 decoder layers (window
attention at 0 and 4), a 2-block vision tower, a byte-level tokenizer with the checkpoint's
special tokens. Weights are random (seeded): the outputs are well-defined but meaningless.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file

from .config import ModelConfig, VisionConfig
from .infinitevl import InfiniteVL
from .prompts import SPECIAL_TOKENS

TINY_FRAME_SIZE = 56  # 2x2 merged tokens per frame


def build_tokenizer():
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    core = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None,
    )


def tiny_config(tokenizer) -> ModelConfig:
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vocab = 8 * math.ceil(len(tokenizer) / 8)
    return ModelConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=6,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, mrope_section=(2, 3, 3),
        sliding_window=32, num_linear_heads=2, num_linear_key_value_heads=2, linear_head_dim=16,
        expand_v=2, conv_size=4,
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision=VisionConfig(depth=2, hidden_size=32, num_heads=2, intermediate_size=64,
                            fullatt_block_indexes=(1,), out_hidden_size=64),
    )


def random_weights(model: InfiniteVL, seed: int) -> dict[str, torch.Tensor]:
    """Seeded weights with sensible scales: decays in (0, 1), norms at 1, small projections."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, p in model.named_parameters():
        if name.endswith("A_log"):
            t = torch.empty(p.shape).uniform_(0.0, math.log(16), generator=gen)
        elif name.endswith("dt_bias"):
            dt = torch.empty(p.shape).uniform_(math.log(1e-3), math.log(1e-1), generator=gen).exp()
            t = dt + torch.log(-torch.expm1(-dt))  # inverse softplus
        elif p.ndim == 1 and ("norm" in name or "ln_q" in name):
            t = 1.0 + 0.1 * torch.randn(p.shape, generator=gen)
        elif p.ndim == 1:  # biases
            t = 0.02 * torch.randn(p.shape, generator=gen)
        else:
            fan_in = p[0].numel()
            t = torch.randn(p.shape, generator=gen) / math.sqrt(fan_in)
        out[name] = t.contiguous()
    return out


def write_tiny_checkpoint(directory: str | Path, seed: int = 0, layout: str = "legacy") -> Path:
    """Write config.json, model.safetensors and tokenizer files; load with `load_model(directory,
    frame_size=TINY_FRAME_SIZE)`. `layout`: "legacy" (model.layers.N, visual.) or "nested"
    (model.language_model., model.visual.)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    cfg = tiny_config(tokenizer)
    with torch.device("meta"):
        model = InfiniteVL(cfg, TINY_FRAME_SIZE)
    weights = random_weights(model, seed)
    if layout == "nested":
        weights = {
            ("model.visual." + n[len("visual."):]) if n.startswith("visual.") else "model.language_model." + n[len("model."):]: t
            for n, t in weights.items()
        }
    elif layout != "legacy":
        raise ValueError(f"layout {layout!r}: expected 'legacy' or 'nested'")
    save_file(weights, str(directory / "model.safetensors"), metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True))
    tokenizer.save_pretrained(str(directory))
    return directory
