"""The token mixers' CUDA kernels against their PyTorch references at the 4B model's shapes: fla's
gated delta rule (token-serial and chunked) and FlexAttention over the window. bf16 inputs, fp32
references. Tolerances: 4x the errors in the gpu_model_check records (the same on every run)."""

import pytest
import torch

from vidindex.model import ModelConfig
from vidindex.model.kernels import gated_delta, window_attention

from .conftest import rel_err

CFG = ModelConfig()  # the 4B config

GDN_CASES = [
    # (B, T, output tolerance, state tolerance)
    # T <= 64, fla's token-serial kernel: 4x gdn_B2_T64 (3.3e-5, 5.3e-7), gpu_model_check-2026-11-22-h100.json
    (1, 1, 4 * 3.3e-5, 4 * 5.3e-7),
    (2, 64, 4 * 3.3e-5, 4 * 5.3e-7),
    # T > 64, fla's chunked kernel: 4x gdn_B2_T2048 (4.5e-3, 3.2e-3), gpu_model_check-2026-11-22-h100.json
    (1, 256, 4 * 4.5e-3, 4 * 3.2e-3),
    (2, 2048, 4 * 4.5e-3, 4 * 3.2e-3),
]


@pytest.mark.parametrize("B,T,out_tol,state_tol", GDN_CASES, ids=[f"B{c[0]}-T{c[1]}" for c in GDN_CASES])
def test_fla_gated_delta_rule_matches_reference(B, T, out_tol, state_tol):
    H, K, V = CFG.num_linear_heads, CFG.linear_head_dim, CFG.linear_value_dim
    g = torch.Generator(device="cuda").manual_seed(0)

    def randn(*shape, dtype=torch.bfloat16):
        return torch.randn(*shape, device="cuda", generator=g, dtype=dtype)

    q, k, v = randn(B, T, H, K), randn(B, T, H, K), randn(B, T, H, V)
    decay = -torch.rand(B, T, H, device="cuda", generator=g) * 0.5
    beta = torch.rand(B, T, H, device="cuda", generator=g).to(torch.bfloat16)
    s0 = randn(B, H, K, V, dtype=torch.float32) * 0.1
    with torch.inference_mode():
        o_ref, s_ref = gated_delta.chunked_reference(q, k, v, decay, beta, s0)
        o, s = gated_delta.fla_kernel(q, k, v, decay, beta, s0)
    assert o.shape == o_ref.shape and o.dtype == v.dtype
    assert s.shape == s_ref.shape and s.dtype == torch.float32
    assert rel_err(o, o_ref) <= out_tol
    assert rel_err(s, s_ref) <= state_tol


# 4x window_B1_T2048 (2.34e-3), the worst window_* error of the records, gpu_model_check-2026-11-21-h100-first.json
WINDOW_TOL = 4 * 2.34e-3

WINDOW_CASES = [
    # (B, new queries, valid cached keys per stream)
    (3, 256, (0, 4000, CFG.kv_capacity)),  # empty, part-filled and full buffers in one batch
    (1, 2048, (CFG.kv_capacity,)),
    (2, window_attention.FLEX_MIN_QUERIES, (17, CFG.kv_capacity)),  # the fewest queries the model sends to it
]


@pytest.mark.parametrize("B,T,kv_lens", WINDOW_CASES, ids=[f"B{c[0]}-T{c[1]}" for c in WINDOW_CASES])
def test_flex_window_attention_matches_sdpa_reference(B, T, kv_lens):
    cap = CFG.kv_capacity
    hq, hkv, d = CFG.num_attention_heads, CFG.num_key_value_heads, CFG.head_dim
    assert window_attention.flex_supported(T, d, torch.bfloat16)  # the model takes this path here
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(B, T, hq, d, device="cuda", generator=g, dtype=torch.bfloat16)
    keys = torch.randn(B, cap + T, hkv, d, device="cuda", generator=g, dtype=torch.bfloat16)
    values = torch.randn(B, cap + T, hkv, d, device="cuda", generator=g, dtype=torch.bfloat16)
    kv_len = torch.tensor(kv_lens, device="cuda")
    with torch.inference_mode():  # as the model calls it (the compiled kernel guards on it)
        ref = window_attention.sdpa_reference(q.float(), keys.float(), values.float(),
                                              window_attention.window_mask(kv_len, cap, T))
        got = window_attention.flex_attention(q, keys, values, window_attention.flex_block_mask(kv_len, cap, T))
    assert got.shape == ref.shape and got.dtype == torch.bfloat16
    assert rel_err(got, ref) <= WINDOW_TOL
