"""The decoder's forward over new tokens, replayed from CUDA graphs on the fast path.

Eager, one forward of the 36-layer decoder launches ~1,500 kernels from Python: for 64 frames
about as much host time as the GPU needs (~0.24 s), and ~70 ms for a question whose GPU work
is a few ms. On the fast path the forward is captured once per (streams, tokens) for a few
token counts (CHUNK_FRAMES frames, CHUNK_TOKENS text tokens), and any input runs as a sequence
of those chunks. Each streams count has one static state the graphs work on: the stream's
state is copied in before and back after (the 4B model's 134 MB: ~0.1 ms each way), so
graphs serve any stream. Same kernels as eager; chunking only regroups the same arithmetic.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import torch

from .state import StreamState

CHUNK_FRAMES = (32, 8, 1)  # frames per captured forward; any frame count is a sum of these
CHUNK_TOKENS = (16, 4, 1)  # text tokens per captured forward (questions, vision start)
GRAPHS_KEPT = 16  # captured (streams, tokens) forwards kept per model; the oldest goes first


def chunk_sizes(total: int, sizes) -> list[int]:
    """total as a sum of the given sizes (largest first, greedily); sizes must include 1."""
    out = []
    for size in sorted(set(sizes), reverse=True):
        k, total = divmod(total, size)
        out += [size] * k
    return out


def forward_in_chunks(forward, embeds: torch.Tensor, positions: torch.Tensor, sizes: list[int]):
    """forward(embeds, positions) over consecutive chunks of the sequence of the given sizes;
    returns the last chunk's logits."""
    start, logits = 0, None
    for size in sizes:
        logits = forward(embeds[:, start:start + size], positions[:, :, start:start + size])
        start += size
    return logits


def capture(fn, pool=None):
    """(graph, fn's output) with fn captured as a CUDA graph. fn runs twice first on a side
    stream, so compiling, autotuning and first allocations happen outside the capture."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    # thread_local: other threads of the process (a service's) may use the GPU during a capture
    with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
        out = fn()
    return graph, out


class CapturedForward:
    """model.forward_embeds for a static state and a fixed number of new tokens."""

    def __init__(self, model, state: StreamState, tokens: int, pool):
        batch = state.batch_size
        self.embeds = torch.zeros(batch, tokens, model.config.hidden_size, device=model.device, dtype=model.dtype)
        self.positions = torch.zeros(3, batch, tokens, device=model.device, dtype=torch.long)
        self.graph, self.logits = capture(lambda: model.forward_embeds(self.embeds, self.positions, state), pool)

    def __call__(self, embeds, positions):
        self.embeds.copy_(embeds)
        self.positions.copy_(positions)
        self.graph.replay()
        return self.logits


class GraphedDecoder:
    """One model's captured forwards, all in one memory pool (they never run at once)."""

    def __init__(self, model):
        self.model = model
        self.pool = torch.cuda.graph_pool_handle()
        self.states: dict[int, StreamState] = {}
        self.graphs: OrderedDict = OrderedDict()

    def forward(self, embeds: torch.Tensor, positions: torch.Tensor, state: StreamState) -> torch.Tensor:
        batch, tokens = embeds.shape[:2]
        per_frame = self.model.tokens_per_frame
        frames, text = divmod(tokens, per_frame)
        sizes = [n * per_frame for n in chunk_sizes(frames, CHUNK_FRAMES)] + chunk_sizes(text, CHUNK_TOKENS)
        static = self.states.get(batch) or self.states.setdefault(batch, self.model.new_state(batch))
        # Capture first: a capture's warm-up runs scribble on the static state.
        graphs = {size: self._graph(static, size) for size in sizes}
        static.copy_(state)
        logits = forward_in_chunks(lambda e, p: graphs[e.shape[1]](e, p), embeds, positions, sizes)
        state.copy_(static)
        return logits.clone()  # the graphs' output buffer is overwritten by the next replay

    def _graph(self, static: StreamState, tokens: int) -> CapturedForward:
        key = (static.batch_size, tokens)
        if key not in self.graphs:
            while len(self.graphs) >= GRAPHS_KEPT:
                self.graphs.popitem(last=False)
            in_use = {batch for batch, _ in self.graphs} | {static.batch_size}
            self.states = {batch: s for batch, s in self.states.items() if batch in in_use}
            self.graphs[key] = CapturedForward(self.model, static, tokens, self.pool)
        self.graphs.move_to_end(key)
        return self.graphs[key]


class GraphRuntime:
    """What a model keeps between calls to run from CUDA graphs: made with the model
    (InfiniteVL.runtime), filled on first use on the fast path, empty otherwise."""

    def __init__(self):
        # Held while the graphs run: their static states serve one stream at a time, so threads
        # sharing a model (a service, a notebook) take turns.
        self.lock = threading.RLock()
        self.forwards: GraphedDecoder | None = None  # the decoder's captured forwards
        self.decode_steps: OrderedDict = OrderedDict()  # batch size -> captured decode step (decode.py)
        self.warmed_up = False  # stream.warm_up ran every captured shape once


def forward_tokens(model, embeds: torch.Tensor, positions: torch.Tensor, state: StreamState) -> torch.Tensor:
    """model.forward_embeds (state updated in place, last logits returned), from CUDA graphs on
    the fast path."""
    if model.kernels.name != "fast":
        return model.forward_embeds(embeds, positions, state)
    runtime = model.runtime
    with runtime.lock:
        if runtime.forwards is None:
            runtime.forwards = GraphedDecoder(model)
        return runtime.forwards.forward(embeds, positions, state)
