"""The InfiniteVL network: Qwen2.5-VL vision tower + hybrid decoder (window attention every 4th
layer, Gated DeltaNet elsewhere) + tied lm_head.

Module names match the checkpoint's legacy layout (`model.layers.N...`, `visual...`), so its
tensors load without renaming. The network is stateless: every step reads and updates an
explicit StreamState.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .float8 import Float8Linear
from .graphs import GraphRuntime
from .kernels import Kernels
from .layers import DecoderLayer, RMSNorm, mrope_cos_sin
from .state import StreamState
from .vision import build_vision_tower, encode_frames, preprocess


class TextModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class InfiniteVL(nn.Module):
    def __init__(self, cfg: ModelConfig, frame_size: int = 448, kernels: Kernels | None = None):
        super().__init__()
        unit = cfg.vision.patch_size * cfg.vision.spatial_merge_size
        if frame_size <= 0 or frame_size % unit:
            raise ValueError(f"frame_size {frame_size}: must be a positive multiple of {unit}")
        self.config = cfg
        self.frame_size = frame_size
        self.kernels = kernels or Kernels("reference")
        self.model = TextModel(cfg)
        self.visual = build_vision_tower(cfg.vision)
        self.runtime = GraphRuntime()  # captured CUDA graphs and their lock (graphs.py)
        # Set by the loader: the tokenizer and where the weights came from.
        self.tokenizer = None
        self.model_id = "unnamed"

    # Sizes --------------------------------------------------------------------------------
    @property
    def tokens_per_frame(self) -> int:
        return (self.frame_size // (self.config.vision.patch_size * self.config.vision.spatial_merge_size)) ** 2

    @property
    def device(self) -> torch.device:
        return self.model.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of activations and state."""
        return self.model.embed_tokens.weight.dtype

    @property
    def precision(self) -> str:
        """"float8" when the linear layers run in float8 (see float8.py), else the dtype's name."""
        if any(isinstance(m, Float8Linear) for m in self.modules()):
            return "float8"
        return str(self.dtype).removeprefix("torch.")

    # Steps --------------------------------------------------------------------------------
    def embed_frames(self, frames_u8: torch.Tensor) -> torch.Tensor:
        """uint8 [N, H, W, 3] -> [N, tokens_per_frame, hidden]."""
        pixels = preprocess(frames_u8, self.frame_size, self.config.vision, self.device, self.dtype)
        return encode_frames(self.visual, pixels, frames_u8.shape[0], self.frame_size, self.config.vision,
                             compiled=self.kernels.name == "fast")

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.embed_tokens(ids)

    def forward_embeds(self, embeds: torch.Tensor, positions: torch.Tensor, state: StreamState) -> torch.Tensor:
        """Run the decoder over new tokens and update `state` in place.

        embeds [B, T, hidden]; positions [3, B, T] (M-RoPE t/h/w). Returns the last position's
        logits [B, vocab] in fp32.
        """
        x, delta = self._decode(embeds, positions, state, last_only=True)
        last = self.model.norm(x[:, -1] + delta[:, -1], self.kernels)
        return (last @ self.model.embed_tokens.weight.T).float()

    def forward_all(self, embeds: torch.Tensor, positions: torch.Tensor, state: StreamState) -> torch.Tensor:
        """forward_embeds with the logits of every position: [B, T, vocab] in fp32 (training
        reads them; with gradients on, `state`'s entries are replaced rather than written)."""
        x, delta = self._decode(embeds, positions, state, last_only=False)
        return (self.model.norm(x + delta, self.kernels) @ self.model.embed_tokens.weight.T).float()

    def _decode(self, embeds, positions, state: StreamState, last_only: bool):
        """The decoder layers over new tokens; (residual, last MLP output), the last layer's
        for the last position only when `last_only`. Counters are updated in place."""
        cos, sin = mrope_cos_sin(positions, self.config, embeds.dtype)
        kv_len = state.counters["kv_len"]
        t = embeds.shape[1]
        cfg = self.config
        plan = self.kernels.window_plan(kv_len, cfg.kv_capacity, t, cfg.head_dim, embeds.dtype)
        x, delta = embeds, None
        final = len(self.model.layers) - 1
        for i, (layer, layer_state) in enumerate(zip(self.model.layers, state.layers)):
            x, delta = layer(x, delta, cos, sin, layer_state, plan, self.kernels, last_only=last_only and i == final)
        kv_len.add_(t).clamp_(max=self.config.kv_capacity)
        state.counters["tokens_seen"].add_(t)
        return x, delta

    def new_state(self, batch: int = 1) -> StreamState:
        return StreamState.allocate(self.config, batch, self.device, self.dtype)

    # Streams (defined in stream.py, attached here so users only need the model) ------------
    def new_stream(self, batch: int = 1):
        from .stream import Stream

        return Stream(self, self.new_state(batch))

    def load_stream(self, uri: str, fs_options: dict | None = None):
        from .stream import Stream

        return Stream.load(self, uri, fs_options=fs_options)
