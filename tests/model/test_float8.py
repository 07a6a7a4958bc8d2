"""Float8 linear layers: exact use of their scales, bounded error, and a whole float8 model that
streams, answers and snapshots like any other (on the CPU, where the float8 matmul also runs)."""

import numpy as np
import pytest
import torch
from torch import nn

from vidindex.model import Stream, load_model
from vidindex.model.config import VisionConfig
from vidindex.model.float8 import (FEW_ROWS, FLOAT8, Float8Linear, QuantizedInput, add_norm_input,
                                   quantize_float8, quantize_rows, shared_input, silu_mul_input)
from vidindex.model.kernels.elementwise import rms_norm
from vidindex.model.tiny import TINY_FRAME_SIZE
from vidindex.model.vision import build_vision_tower, encode_uniform_windows, preprocess

from .conftest import make_frames


def rel(a, b):
    return float((a.detach().float() - b.detach().float()).norm() / b.detach().float().norm())


@pytest.mark.parametrize("in_f,out_f,bias", [(64, 48, True), (100, 342, True), (256, 512, False)])
def test_float8_linear_is_the_product_of_its_quantized_operands(in_f, out_f, bias):
    """Sides that are not multiples of 16 are padded; the result is exactly the product of the
    per-row quantized input and the per-channel quantized weight, and within float8's
    precision of the original layer."""
    torch.manual_seed(0)
    layer = nn.Linear(in_f, out_f, bias=bias)
    f8 = Float8Linear(layer)
    assert f8.weight.dtype == FLOAT8 and f8.weight.shape[0] % 16 == 0 and f8.weight.shape[1] % 16 == 0
    x = torch.randn(3, 7, in_f)
    got = f8(x)
    assert got.shape == (3, 7, out_f)
    x8, scale = quantize_rows(x.reshape(-1, in_f))
    exact = (x8.float() * scale) @ f8.dequantized_weight().T
    if bias:
        exact = exact + layer.bias
    torch.testing.assert_close(got.reshape(-1, out_f), exact, atol=1e-5, rtol=1e-5)
    assert rel(got, layer(x)) < 0.06  # e4m3 keeps 3 mantissa bits: a few % per product


def test_a_shared_input_is_quantized_once_for_layers_that_read_it():
    """Layers reading the same x (q, k, v, gate) take one quantization of it, with the very
    result each would get alone; plain layers take x itself."""
    torch.manual_seed(1)
    a, b = Float8Linear(nn.Linear(40, 24)), Float8Linear(nn.Linear(40, 72, bias=False))
    x = torch.randn(4, 5, 40)
    shared = shared_input(x, a)
    assert shared.rows.dtype == FLOAT8 and shared.lead == (4, 5)
    assert torch.equal(a(shared), a(x)) and torch.equal(b(shared), b(x))
    plain = nn.Linear(40, 8)
    assert shared_input(x, plain) is x


def test_the_gated_input_of_a_down_projection_is_quantized_with_its_product():
    """silu(a + bias_a) * (b + bias_b) reaches a float8 down projection as the quantization of
    its fp32 product (what the fused GPU pass computes), and a plain layer as the product."""
    torch.manual_seed(2)
    down = Float8Linear(nn.Linear(36, 20))
    a, b = torch.randn(4, 5, 36), torch.randn(4, 5, 36)
    bias_a, bias_b = torch.randn(36), torch.randn(36)
    got = silu_mul_input(a, b, down, bias_a, bias_b)
    rows, scale = quantize_rows((torch.nn.functional.silu(a + bias_a) * (b + bias_b)).reshape(20, 36), pad=12)
    assert torch.equal(got.rows.float(), rows.float()) and torch.equal(got.scale, scale) and got.lead == (4, 5)
    plain = silu_mul_input(a, b, nn.Linear(36, 20), bias_a, bias_b)
    torch.testing.assert_close(plain, torch.nn.functional.silu(a + bias_a) * (b + bias_b))


def test_a_residual_add_and_norm_reach_a_float8_layer_quantized():
    """add_norm_input: the residual stream x + (delta + bias), and its RMS norm as the next layer
    takes it: quantized for a float8 layer (one pass on a GPU), the norm itself for a plain one."""
    torch.manual_seed(3)
    x, delta = torch.randn(4, 5, 40), torch.randn(4, 5, 40)
    bias, weight = torch.randn(40), torch.rand(40) + 0.5
    layer = Float8Linear(nn.Linear(40, 24))
    total, got = add_norm_input(x, delta, bias, weight, 1e-6, layer)
    expected_total = x + (delta + bias)
    assert torch.equal(total, expected_total)
    assert torch.equal(layer(got), layer(rms_norm(expected_total, weight, 1e-6)))
    plain_total, plain = add_norm_input(x, delta, bias, weight, 1e-6, nn.Linear(40, 24))
    assert torch.equal(plain_total, expected_total) and torch.equal(plain, rms_norm(expected_total, weight, 1e-6))


def test_an_input_of_few_rows_meets_the_float8_weight_unquantized():
    """Up to FEW_ROWS rows (decode steps, short prompts), the input is not quantized: the layer
    gives x @ (its dequantized weight)^T in fp32, and nothing upstream quantizes it either."""
    torch.manual_seed(4)
    layer = Float8Linear(nn.Linear(40, 24))
    down = Float8Linear(nn.Linear(36, 20, bias=False))
    for lead in [(1, 1), (2, 8)]:
        x = torch.randn(*lead, 40)
        assert shared_input(x, layer) is x
        exact = x @ layer.dequantized_weight().T + layer.bias
        torch.testing.assert_close(layer(x), exact, atol=1e-5, rtol=1e-5)
        a, b = torch.randn(*lead, 36), torch.randn(*lead, 36)
        torch.testing.assert_close(silu_mul_input(a, b, down), torch.nn.functional.silu(a) * b)
    more = torch.randn(FEW_ROWS + 1, 40)
    assert isinstance(shared_input(more, layer), QuantizedInput)
    assert not torch.allclose(layer(more), more @ layer.dequantized_weight().T + layer.bias, atol=1e-5, rtol=1e-5)


def test_quantize_rows_scales_each_row_to_the_float8_range():
    x = torch.tensor([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0], [1000.0, 3.0, -7.0]])
    q, scale = quantize_rows(x)
    assert q.dtype == FLOAT8
    assert torch.equal(q.float().abs().amax(-1), torch.tensor([448.0, 0.0, 448.0]))
    assert torch.equal(q[1].float(), torch.zeros(3))  # an all-zero row stays zero, no NaN
    torch.testing.assert_close(q.float() * scale, x, rtol=0.07, atol=0)


def test_quantize_float8_keeps_the_gate_projections():
    layer = nn.Module()
    layer.q_proj, layer.a_proj, layer.b_proj = nn.Linear(32, 32), nn.Linear(32, 4), nn.Linear(32, 4)
    layer.seq = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32))
    quantize_float8(layer)
    assert isinstance(layer.q_proj, Float8Linear)
    assert isinstance(layer.seq[0], Float8Linear) and isinstance(layer.seq[2], Float8Linear)
    assert type(layer.a_proj) is nn.Linear and type(layer.b_proj) is nn.Linear


def load_model_float8(checkpoint):
    return load_model(checkpoint, device="cpu", dtype="float8", frame_size=TINY_FRAME_SIZE)


def test_float8_vision_tower_stays_close_to_the_float_tower():
    vc = VisionConfig(depth=4, hidden_size=64, num_heads=2, intermediate_size=120, fullatt_block_indexes=(1,),
                      out_hidden_size=48)
    torch.manual_seed(0)
    tower = build_vision_tower(vc).eval()
    frames = torch.randint(0, 256, (2, 112, 112, 3), dtype=torch.uint8)
    pixels = preprocess(frames, 112, vc, "cpu", torch.float32)
    with torch.no_grad():
        ref = encode_uniform_windows(tower, pixels, 2, 112, vc)
        quantize_float8(tower)
        got = encode_uniform_windows(tower, pixels, 2, 112, vc)
    assert isinstance(tower.blocks[0].mlp.gate_proj, Float8Linear)
    assert rel(got, ref) < 0.1


def test_float8_model_streams_answers_and_resumes_exactly(tmp_path, tiny_checkpoint, tiny_model):
    """Loaded with dtype "float8": its logits stay near the fp32 model's, its snapshots say
    float8, and save / load / continue equals never stopping (the snapshot invariant)."""
    model = load_model_float8(tiny_checkpoint)
    assert model.precision == "float8" and tiny_model.precision == "float32"
    assert model.dtype == torch.float32  # activations and state keep the CPU default
    n_float8 = sum(isinstance(m, Float8Linear) for m in model.modules())
    n_linear = sum(type(m) is nn.Linear for m in tiny_model.modules())
    assert n_float8 == n_linear - 2 * sum(not layer.is_attention for layer in model.model.layers)

    frames, times = make_frames(6, seed=3), np.arange(6, dtype=np.float64)
    ref, s8 = tiny_model.new_stream(), model.new_stream()
    ref_logits, logits = ref.feed(frames[None, :4], [times[:4]]), s8.feed(frames[None, :4], [times[:4]])
    # A random tiny model amplifies rounding (bf16 is 0.14 off here, float8 about 0.67); a
    # wrong scale or layout would be off by far more than 1.
    assert rel(logits, ref_logits) < 0.8
    [answer] = s8.ask(["What is happening?"], max_new_tokens=6)
    assert isinstance(answer, str)

    uri = str(tmp_path / "f8.safetensors")
    s8.save(uri)
    resumed = Stream.load(model, uri)
    assert resumed.to_bytes() == s8.to_bytes()
    from vidindex.model import read_snapshot_metadata

    assert read_snapshot_metadata(s8.to_bytes())["dtype"] == "float8"
    a = s8.feed(frames[None, 4:], [times[4:]])
    b = resumed.feed(frames[None, 4:], [times[4:]])
    assert torch.equal(a, b)
    for name, t in s8.state_tensors().items():
        assert torch.equal(t, resumed.state_tensors()[name]), name
