"""A complete tiny InfiniteVL checkpoint in the official format, for tests and the demo.

Same architecture and tensor names as the 4B model at toy sizes: 6 decoder layers (window
attention at 0 and 4), a 2-block vision tower, a word-level tokenizer over a few hundred words
with the checkpoint's special tokens. Weights are random (seeded): the outputs are well-defined but meaningless.

Also the self-test model's config and vocabulary (selftest_config, SELFTEST_WORDS; trained by
train_tiny.py) and the checkpoint writer both use (write_checkpoint).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file

from .config import ModelConfig, VisionConfig
from .infinitevl import InfiniteVL
from .loading import build_empty, finish_model
from .prompts import SPECIAL_TOKENS

TINY_FRAME_SIZE = 56  # 2x2 merged tokens per frame

# The trained self-test model shipped in the package (train_tiny.py wrote it; its README.md
# gives the command, seed and measured accuracies).
SELFTEST_MODEL_DIR = Path(__file__).resolve().parent / "selftest-model"


# A small word vocabulary, so the random model's outputs are words that search can find.
TINY_WORDS = (
    "a an the and or but with without of in on at to from into over under near behind between "
    "is are was were be has have had it its this that these those there here then now again "
    "red orange yellow green blue purple pink brown black white grey gray dark bright light "
    "circle square triangle rectangle shape shapes line dot box ball star ring stripe "
    "person people man woman child dog cat car bus bike tree house road river sky cloud sun "
    "room table chair door window screen wall floor street city field water fire snow rain "
    "moves moving runs running walks walking stands standing sits sitting jumps turns opens "
    "closes appears appearing disappears enters leaves falls rises grows shrinks spins stops "
    "left right up down top bottom center middle corner edge front back inside outside "
    "big small large tiny tall short long fast slow quiet loud empty full new old same other "
    "one two three four five many few some all none every each first last next second minute "
    "scene video frame camera view shot time clock number text sign time-code counter "
    "what where when who why how which describe happened happens since description question "
    "answer yes no you helpful assistant . , ? ! : -"
).split()


# The self-test model's words (train_tiny.py): the tiny words plus the synthetic videos' colours
# and shapes (vidindex.video.synthetic.PALETTE, SHAPES) and the words of its answers and prompts.
SELFTEST_WORDS = TINY_WORDS + list(
    "magenta cyan teal bar background colour colours color colors system user".split()
)


def build_tokenizer(words=TINY_WORDS, lowercase: bool = False):
    """A word-level tokenizer over `words` with the checkpoint's special tokens; `lowercase`:
    text is lowercased first ("What" reads as "what")."""
    from tokenizers import AddedToken, Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>"] + sorted(set(words))
    core = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    if lowercase:
        core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    core.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token="<unk>",
        bos_token=None,
    )


def special_token_ids(tokenizer) -> dict:
    """The config's special-token fields, from the tokenizer."""
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    return dict(
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
    )


def tiny_config(tokenizer) -> ModelConfig:
    vocab = 8 * math.ceil(len(tokenizer) / 8)
    return ModelConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=6,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, mrope_section=(2, 3, 3),
        sliding_window=32, num_linear_heads=2, num_linear_key_value_heads=2, linear_head_dim=16,
        expand_v=2, conv_size=4, **special_token_ids(tokenizer),
        vision=VisionConfig(depth=2, hidden_size=32, num_heads=2, intermediate_size=64,
                            fullatt_block_indexes=(1,), out_hidden_size=64),
    )


def selftest_config(tokenizer) -> ModelConfig:
    """The self-test model (train_tiny.py): 6 layers, window attention at 0 and 4 over 32 tokens
    (8 frames of TINY_FRAME_SIZE at most), so what it must remember from minutes ago can only be
    in the Gated DeltaNet state; a 4-block vision tower. About 1.9M parameters."""
    vocab = 8 * math.ceil(len(tokenizer) / 8)
    return ModelConfig(
        vocab_size=vocab, hidden_size=128, intermediate_size=384, num_hidden_layers=6,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, mrope_section=(4, 6, 6),
        sliding_window=32, num_linear_heads=4, num_linear_key_value_heads=4, linear_head_dim=32,
        expand_v=2, conv_size=4, **special_token_ids(tokenizer),
        vision=VisionConfig(depth=4, hidden_size=64, num_heads=4, intermediate_size=128,
                            fullatt_block_indexes=(1, 3), out_hidden_size=128),
    )


def _fill_random(name: str, p: torch.Tensor, gen: torch.Generator) -> None:
    """Seeded values with sensible scales: decays in (0, 1), norms near 1, small projections."""
    if name.endswith("A_log"):
        p.uniform_(0.0, math.log(16), generator=gen)
    elif name.endswith("dt_bias"):
        dt = torch.empty_like(p, dtype=torch.float32).uniform_(math.log(1e-3), math.log(1e-1), generator=gen).exp()
        p.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
    elif p.ndim == 1 and ("norm" in name or "ln_q" in name):
        p.normal_(1.0, 0.1, generator=gen)
    elif p.ndim == 1:  # biases
        p.normal_(0.0, 0.02, generator=gen)
    else:
        p.normal_(0.0, 1.0 / math.sqrt(p[0].numel()), generator=gen)


def random_weights(model: InfiniteVL, seed: int, device="cpu") -> dict[str, torch.Tensor]:
    """Seeded float32 weights on `device` for every parameter of a (meta) model."""
    gen = torch.Generator(device=device).manual_seed(seed)
    out = {}
    for name, p in model.named_parameters():
        t = torch.empty(p.shape, device=device)
        _fill_random(name, t, gen)
        out[name] = t
    return out


def random_model(cfg: ModelConfig, device, dtype: torch.dtype | str | None = torch.bfloat16, seed: int = 0,
                 frame_size: int = 448, kernels: str | None = None) -> InfiniteVL:
    """A model of any config with seeded random weights made on `device` (for GPU checks and
    benchmarks at full size, where no checkpoint is needed). dtype and kernels as for
    load_model; the same seed gives the same weights before rounding to dtype."""
    model = build_empty(cfg, frame_size)
    model.to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            _fill_random(name, p, gen)
    finish_model(model, device, dtype, kernels)
    model.tokenizer = build_tokenizer()
    return model


def write_checkpoint(directory: str | Path, cfg: ModelConfig, weights: dict[str, torch.Tensor], tokenizer,
                     layout: str = "legacy") -> Path:
    """config.json, model.safetensors and the tokenizer files in the official format, for
    load_model. weights: this model's parameter names (the legacy layout); `layout` "nested"
    writes model.language_model. / model.visual. names instead."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if layout == "nested":
        weights = {
            ("model.visual." + n[len("visual."):]) if n.startswith("visual.") else "model.language_model." + n[len("model."):]: t
            for n, t in weights.items()
        }
    elif layout != "legacy":
        raise ValueError(f"layout {layout!r}: expected 'legacy' or 'nested'")
    weights = {n: t.detach().contiguous().cpu() for n, t in weights.items()}
    save_file(weights, str(directory / "model.safetensors"), metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True))
    tokenizer.save_pretrained(str(directory))
    return directory


def write_tiny_checkpoint(directory: str | Path, seed: int = 0, layout: str = "legacy") -> Path:
    """Write config.json, model.safetensors and tokenizer files; load with `load_model(directory,
    frame_size=TINY_FRAME_SIZE)`. `layout`: "legacy" (model.layers.N, visual.) or "nested"
    (model.language_model., model.visual.)."""
    tokenizer = build_tokenizer()
    cfg = tiny_config(tokenizer)
    with torch.device("meta"):
        model = InfiniteVL(cfg, TINY_FRAME_SIZE)
    return write_checkpoint(directory, cfg, random_weights(model, seed), tokenizer, layout)
