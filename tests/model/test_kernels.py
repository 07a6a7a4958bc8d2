"""Every fast path has a reference; the references agree with the definitions."""

import pytest
import torch

from vidindex.model.kernels import gated_delta, window_attention


def _gdn_inputs(B=2, T=150, H=3, K=16, V=32, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=g, dtype=dtype)
    k = torch.randn(B, T, H, K, generator=g, dtype=dtype)
    v = torch.randn(B, T, H, V, generator=g, dtype=dtype)
    decay = -torch.rand(B, T, H, generator=g, dtype=dtype) * 2
    beta = torch.rand(B, T, H, generator=g, dtype=dtype)
    s0 = torch.randn(B, H, K, V, generator=g, dtype=dtype)
    return q, k, v, decay, beta, s0


@pytest.mark.parametrize("T,chunk", [(1, 64), (63, 16), (64, 64), (150, 64), (150, 7)])
def test_chunked_delta_rule_equals_token_recurrence(T, chunk):
    q, k, v, g, beta, s0 = _gdn_inputs(T=T)
    o_ref, s_ref = gated_delta.recurrent_reference(q, k, v, g, beta, s0)
    o, s = gated_delta.chunked_reference(q, k, v, g, beta, s0, chunk_size=chunk)
    torch.testing.assert_close(o, o_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(s, s_ref, atol=1e-5, rtol=1e-5)


def test_delta_rule_in_two_calls_equals_one():
    q, k, v, g, beta, s0 = _gdn_inputs(T=100)
    o_all, s_all = gated_delta.chunked_reference(q, k, v, g, beta, s0)
    o1, s1 = gated_delta.chunked_reference(q[:, :37], k[:, :37], v[:, :37], g[:, :37], beta[:, :37], s0)
    o2, s2 = gated_delta.chunked_reference(q[:, 37:], k[:, 37:], v[:, 37:], g[:, 37:], beta[:, 37:], s1)
    torch.testing.assert_close(torch.cat((o1, o2), 1), o_all, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(s2, s_all, atol=1e-5, rtol=1e-5)


def test_delta_rule_recalls_a_written_value():
    """With no decay and beta = 1, writing v under key k then reading with q = k returns v * scale."""
    K, V = 8, 4
    k = torch.zeros(1, 1, 1, K); k[..., 0] = 3.0
    v = torch.arange(V, dtype=torch.float32).view(1, 1, 1, V) + 1
    o, s = gated_delta.recurrent_reference(k, k, v, torch.zeros(1, 1, 1), torch.ones(1, 1, 1), torch.zeros(1, 1, K, V))
    torch.testing.assert_close(o[0, 0, 0], v[0, 0, 0] * K ** -0.5, atol=1e-5, rtol=1e-5)


def _naive_window_attention(q, keys, values, kv_len, capacity):
    """Loop over queries: softmax over exactly the allowed keys."""
    B, T, Hq, D = q.shape
    Hkv = keys.shape[2]
    out = torch.zeros_like(q)
    for b in range(B):
        for i in range(T):
            lo = max(i, capacity - int(kv_len[b]))
            hi = capacity + i
            for h in range(Hq):
                kh = keys[b, lo:hi + 1, h // (Hq // Hkv)]
                vh = values[b, lo:hi + 1, h // (Hq // Hkv)]
                w = torch.softmax((kh @ q[b, i, h]) * D ** -0.5, 0)
                out[b, i, h] = w @ vh
    return out


def test_window_attention_reference_matches_naive_loop():
    g = torch.Generator().manual_seed(1)
    capacity, T = 7, 5
    q = torch.randn(3, T, 4, 8, generator=g)
    keys = torch.randn(3, capacity + T, 2, 8, generator=g)
    values = torch.randn(3, capacity + T, 2, 8, generator=g)
    kv_len = torch.tensor([0, 3, 7])
    got = window_attention.sdpa_reference(q, keys, values, window_attention.window_mask(kv_len, capacity, T))
    torch.testing.assert_close(got, _naive_window_attention(q, keys, values, kv_len, capacity), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("capacity,t_new,kv_lens", [
    (8191, 256, (0, 4000, 8191)),  # the 4B model's window: blocks never align with the buffer
    (8191, 1024, (8191, 5)),
    (300, 512, (0, 17, 300)),
    (255, 128, (255, 100)),
])
def test_window_block_mask_matches_torch_construction(capacity, t_new, kv_lens):
    """The block mask built by arithmetic has the blocks torch's own construction finds by
    evaluating the mask everywhere: the same blocks to visit, and the same full blocks (where
    the per-element mask is skipped, so a wrong one would attend outside the window)."""
    from torch.nn.attention.flex_attention import create_block_mask

    kv_len = torch.tensor(kv_lens)
    ours = window_attention.flex_block_mask(kv_len, capacity, t_new)
    dense = window_attention.window_mask(kv_len, capacity, t_new)[:, 0]

    def allowed(b, h, qi, kj):
        return dense[b, qi, kj]

    theirs = create_block_mask(allowed, len(kv_lens), None, t_new, capacity + t_new, device="cpu")
    assert torch.equal(ours.to_dense(), theirs.to_dense())
    assert torch.equal(ours.full_kv_num_blocks, theirs.full_kv_num_blocks)
    assert torch.equal(ours.kv_num_blocks, theirs.kv_num_blocks)
    # and the element mask it carries is the window mask
    b, q, k = torch.meshgrid(torch.arange(len(kv_lens)), torch.arange(t_new), torch.arange(capacity + t_new),
                             indexing="ij")
    assert torch.equal(ours.mask_mod(b, 0, q, k), dense)
