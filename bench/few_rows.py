"""Float8 matmuls of a few rows (decode steps, short prompts) at the 4B decoder's shapes: the
Triton kernel (kernels/few_rows.py) against its reference, and its tiles chosen by timing.

    python bench/few_rows.py [--variant NAME] [--out PATH]

For each weight shape of a decoder layer and 1 or 16 input rows, times one call, from a CUDA
graph that runs it over enough distinct weight copies that none stays in the L2 cache (as in a
decode step, where each layer reads its own weights): cuBLAS's float8 matmul on the quantized
input (what the layer did before), the bf16 matmul, and the Triton kernel for each tile in the
grid. Prints the bandwidth each reaches (weight bytes / time) and a whole step's matmul time
(each shape times its number of layers) for the best single tile. The record goes to
bench/results/few_rows-<date>-<gpu>[-variant].json (records.py).
"""

import argparse
import itertools

import torch
import torch.nn.functional as F
from gpu_timing import Results
from records import add_arguments, out_path
from torch import nn

from vidindex.model import ModelConfig
from vidindex.model.float8 import KEEP, Float8Linear, few_rows_matmul
from vidindex.model.kernels.few_rows import CONFIG, few_rows_matmul_cuda
from vidindex.model.layers import DecoderLayer

PEAK_BYTES_PER_S = 3.0e12
GRID = list(itertools.product((16, 32, 64), (128, 256, 512, 1024), (4, 8), (2, 3, 4, 5)))
L2_BYTES = 50 << 20


def layer_shapes(cfg: ModelConfig) -> dict[tuple[int, int], int]:
    """(out, in) of every float8 linear layer of the decoder -> how many layers have it."""
    counts: dict[tuple[int, int], int] = {}
    for index in range(cfg.num_hidden_layers):
        with torch.device("meta"):
            layer = DecoderLayer(cfg, index)
        for name, module in layer.named_modules():
            if type(module) is nn.Linear and name.rsplit(".", 1)[-1] not in KEEP:
                shape = tuple(module.weight.shape)
                counts[shape] = counts.get(shape, 0) + 1
    return counts


def graph_time(calls) -> float:
    """Seconds per call, the calls replayed together from one CUDA graph."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for call in calls:
            call()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for call in calls:
            call()
    graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3 / 10 / len(calls)


def main():
    ap = argparse.ArgumentParser()
    add_arguments(ap)
    args = ap.parse_args()
    res = Results(out_path(args, "few_rows"))
    res.put("device", torch.cuda.get_device_name())
    torch.manual_seed(0)
    for k, n in ((100, 342), (64, 48), (2048, 2048)):  # padded weights, tiny-model sizes, a model size
        layer = Float8Linear(nn.Linear(k, n, bias=False, device="cuda", dtype=torch.bfloat16))
        for m in (1, 3, 16):
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            got = few_rows_matmul_cuda(x, layer.weight, layer.weight_scale, n)
            ref = few_rows_matmul(x, layer.weight, layer.weight_scale, n)
            res.put(f"check_{m}x{k}x{n}", {"shape_ok": list(got.shape) == [m, n],
                                          "max_abs_diff": float((got.float() - ref.float()).abs().max()),
                                          "ref_max_abs": float(ref.float().abs().max())})
    cfg = ModelConfig()
    shapes = layer_shapes(cfg)
    res.put("shapes_out_in_layers", [[*shape, n] for shape, n in shapes.items()])
    totals: dict[str, dict[int, float]] = {}
    for (n, k), layers in shapes.items():
        copies = max(2, -(-4 * L2_BYTES // (n * k)))
        weights = [Float8Linear(nn.Linear(k, n, bias=False, device="cuda", dtype=torch.bfloat16)) for _ in range(copies)]
        bf16 = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) for _ in range(copies)]
        for m in (1, 16):
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            w = weights[0]
            got = few_rows_matmul_cuda(x, w.weight, w.weight_scale, n)
            ref = few_rows_matmul(x, w.weight, w.weight_scale, n)
            err = float((got.float() - ref.float()).norm() / ref.float().norm())

            def cublas(w):
                rows, scale = torch.ops.vidindex.quantize_rows(x, None, None, None, 0)
                return torch._scaled_mm(rows, w.weight.t(), scale_a=scale, scale_b=w.weight_scale, out_dtype=x.dtype)

            found = {"cublas_float8": graph_time([lambda w=w: cublas(w) for w in weights]),
                     "bf16": graph_time([lambda w=w: F.linear(x, w) for w in bf16])}
            for config in GRID:
                try:
                    found[config] = graph_time([lambda w=w: few_rows_matmul_cuda(x, w.weight, w.weight_scale, n, config)
                                                for w in weights])
                except Exception as error:  # a tile that does not fit (shared memory, registers)
                    found[config] = float("inf")
                    last_error = str(error).splitlines()[0][:120]
            for key, sec in found.items():
                totals.setdefault(str(key), {}).setdefault(m, 0.0)
                totals[str(key)][m] += sec * layers
            best = min((c for c in found if isinstance(c, tuple)), key=found.get)
            res.put(f"{n}x{k}_rows{m}", {
                "layers": layers, "rel_err_vs_reference": err,
                "cublas_float8_us": found["cublas_float8"] * 1e6, "bf16_us": found["bf16"] * 1e6,
                "triton_default_us": found[CONFIG] * 1e6, "triton_best_us": found[best] * 1e6, "best": best,
                "triton_default_tb_s": n * k / found[CONFIG] / 1e12,
                "cublas_float8_tb_s": n * k / found["cublas_float8"] / 1e12,
                "bf16_tb_s": 2 * n * k / found["bf16"] / 1e12,
            })
    for m in (1, 16):
        tiles = {key: t[m] for key, t in totals.items() if key.startswith("(")}
        best = min(tiles, key=tiles.get)
        res.put(f"step_matmuls_rows{m}_ms", {
            "cublas_float8": totals["cublas_float8"][m] * 1e3, "bf16": totals["bf16"][m] * 1e3,
            "triton_default": totals[str(CONFIG)][m] * 1e3, "triton_best_single_tile": tiles[best] * 1e3,
            "best_tile": best, "weight_bytes_per_step_gb": sum(n * k * c for (n, k), c in shapes.items()) / 1e9,
            "share_of_bandwidth_default": sum(n * k * c for (n, k), c in shapes.items())
            / totals[str(CONFIG)][m] / PEAK_BYTES_PER_S,
        })
    if "last_error" in locals():
        res.put("a_tile_failed_with", last_error)


if __name__ == "__main__":
    main()
