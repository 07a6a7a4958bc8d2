"""InfiniteVL configuration, read from the official flat Qwen2.5-VL-style `config.json`.

Only fields the model uses are kept; official key names are used on the way in and out so a
written config.json is readable by other tools that know the format.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SLIDING = "sliding_attention"
LINEAR = "linear_attention"


@dataclass(frozen=True)
class VisionConfig:
    depth: int = 32
    hidden_size: int = 1280
    num_heads: int = 16
    intermediate_size: int = 3420
    hidden_act: str = "silu"
    in_channels: int = 3
    patch_size: int = 14
    temporal_patch_size: int = 2
    spatial_merge_size: int = 2
    window_size: int = 112
    fullatt_block_indexes: tuple[int, ...] = (7, 15, 23, 31)
    out_hidden_size: int = 2048
    tokens_per_second: int = 2

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VisionConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "in_chans" in d and "in_channels" not in d:
            kw["in_channels"] = d["in_chans"]
        if "fullatt_block_indexes" in kw:
            kw["fullatt_block_indexes"] = tuple(kw["fullatt_block_indexes"])
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["fullatt_block_indexes"] = list(self.fullatt_block_indexes)
        d["in_chans"] = self.in_channels
        return d


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 151936
    hidden_size: int = 2048
    intermediate_size: int = 11008
    num_hidden_layers: int = 36
    num_attention_heads: int = 16
    num_key_value_heads: int = 2
    head_dim: int = 128
    hidden_act: str = "silu"
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    mrope_section: tuple[int, ...] = (16, 24, 24)
    sliding_window: int = 8192
    tie_word_embeddings: bool = True
    layer_types: tuple[str, ...] = ()
    # Gated DeltaNet layers (official names and defaults).
    num_linear_heads: int = 16
    num_linear_key_value_heads: int = 16
    linear_head_dim: int = 128
    expand_v: int = 2
    conv_size: int = 4
    norm_eps: float = 1e-5
    # Special tokens.
    bos_token_id: int = 151643
    eos_token_id: int = 151645
    vision_start_token_id: int = 151652
    vision_end_token_id: int = 151653
    image_token_id: int = 151655
    video_token_id: int = 151656
    vision: VisionConfig = field(default_factory=VisionConfig)

    def __post_init__(self):
        if not self.layer_types:
            derived = tuple(SLIDING if i % 4 == 0 else LINEAR for i in range(self.num_hidden_layers))
            object.__setattr__(self, "layer_types", derived)
        if len(self.layer_types) != self.num_hidden_layers:
            raise ValueError(
                f"config: layer_types has {len(self.layer_types)} entries, num_hidden_layers is "
                f"{self.num_hidden_layers}"
            )
        for t in self.layer_types:
            if t not in (SLIDING, LINEAR, "full_attention"):
                raise ValueError(f"config: unknown layer type {t!r}")
        if len(self.mrope_section) != 3 or sum(self.mrope_section) * 2 != self.head_dim:
            raise ValueError(
                f"config: mrope_section {list(self.mrope_section)} must be 3 sizes (t, h, w) summing to head_dim/2 = {self.head_dim // 2}"
            )
        if self.vision.out_hidden_size != self.hidden_size:
            raise ValueError("config: vision_config.out_hidden_size must equal hidden_size")

    # Derived sizes --------------------------------------------------------------------------
    @property
    def linear_value_dim(self) -> int:
        return self.linear_head_dim * self.expand_v

    @property
    def kv_capacity(self) -> int:
        """Past tokens kept per window layer: a query sees itself plus sliding_window - 1 before it."""
        return self.sliding_window - 1

    def is_attention_layer(self, i: int) -> bool:
        return self.layer_types[i] != LINEAR

    # Reading and writing ----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        d = dict(d)
        if "text_config" in d:  # nested layout: text fields live in a sub-dict
            d = {**d.pop("text_config"), **d}
        names = {f.name for f in dataclasses.fields(cls)} - {"vision", "mrope_section", "layer_types"}
        kw: dict[str, Any] = {k: d[k] for k in names if k in d and d[k] is not None}
        rope = d.get("rope_scaling") or d.get("rope_parameters") or {}
        if "mrope_section" in rope:
            kw["mrope_section"] = tuple(rope["mrope_section"])
        if "rope_theta" not in kw and "rope_theta" in rope:
            kw["rope_theta"] = rope["rope_theta"]
        if d.get("layer_types"):
            kw["layer_types"] = tuple(d["layer_types"])
        if d.get("use_sliding_window") is False:
            kw["sliding_window"] = 1 << 30  # no window: attention over everything kept
        if "head_dim" not in kw and "hidden_size" in kw and "num_attention_heads" in kw:
            kw["head_dim"] = kw["hidden_size"] // kw["num_attention_heads"]
        vision = VisionConfig.from_dict(d.get("vision_config") or {})
        return cls(vision=vision, **kw)

    @classmethod
    def from_json(cls, path: str | Path) -> "ModelConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: config.json not found") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """The official flat layout (what config.json of the checkpoint holds)."""
        d = dataclasses.asdict(self)
        d.pop("vision")
        d.pop("mrope_section")
        d["layer_types"] = list(self.layer_types)
        d["rope_scaling"] = {"type": "default", "rope_type": "default", "mrope_section": list(self.mrope_section)}
        d["use_sliding_window"] = True
        d["vision_config"] = self.vision.to_dict()
        d["model_type"] = "infinitevl"
        d["architectures"] = ["InfiniteVLQwen2_5_VLForConditionalGeneration"]
        return d

    def config_hash(self) -> str:
        """Hash of everything that fixes parameter and state shapes and the model's math."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
