"""Gated delta rule: the token mixer of the Gated DeltaNet layers.

Per head, with state S [K, V], for each token t (q, k L2-normalised, scale = K ** -0.5):
    S <- exp(g_t) * S
    u_t = beta_t * (v_t - S^T k_t)
    S <- S + k_t u_t^T
    o_t = S^T (scale * q_t)

Shapes: q, k [B, T, H, K]; v [B, T, H, V]; g (log decay, <= 0) and beta [B, T, H];
state [B, H, K, V] fp32. Returns (o [B, T, H, V] in v's dtype, new state [B, H, K, V] fp32).

Two plain PyTorch references (token by token, and chunked in the WY form) and the fla
Triton kernels for CUDA sit behind `gated_delta_rule`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

L2_EPS = 1e-6


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True) + L2_EPS)


def recurrent_reference(q, k, v, g, beta, state):
    """Token-by-token recurrence, in fp32. The definition the other paths are tested against."""
    out_dtype = v.dtype
    q, k = l2_normalize(q.float()), l2_normalize(k.float())
    v, g, beta = v.float(), g.float(), beta.float()
    scale = q.shape[-1] ** -0.5
    s = state.float().clone()
    outs = []
    for t in range(q.shape[1]):
        s = s * g[:, t, :, None, None].exp()
        pred = torch.einsum("bhkv,bhk->bhv", s, k[:, t])
        u = beta[:, t, :, None] * (v[:, t] - pred)
        s = s + torch.einsum("bhk,bhv->bhkv", k[:, t], u)
        outs.append(torch.einsum("bhkv,bhk->bhv", s, q[:, t] * scale))
    return torch.stack(outs, 1).to(out_dtype), s


def chunked_reference(q, k, v, g, beta, state, chunk_size: int = 64):
    """The same function computed a chunk at a time (WY form), in fp32.

    Inside a chunk with cumulative log decay c_t, the updates u solve a unit lower-triangular
    system  (I + L) U = beta * (V - exp(c) * K S0),  L[t, j] = beta_t exp(c_t - c_j) k_t.k_j  (j < t),
    after which outputs and the chunk's final state are dense matrix products.
    """
    out_dtype = v.dtype
    B, T, H, K = q.shape
    V = v.shape[-1]
    q, k = l2_normalize(q.float()), l2_normalize(k.float())
    v, g, beta = v.float(), g.float(), beta.float()
    scale = K ** -0.5
    pad = (-T) % chunk_size
    if pad:  # padded tokens have beta = 0 and g = 0: they neither write nor decay the state
        q, k, v = (F.pad(x, (0, 0, 0, 0, 0, pad)) for x in (q, k, v))
        g, beta = (F.pad(x, (0, 0, 0, pad)) for x in (g, beta))
    n = q.shape[1] // chunk_size
    # [B, H, n, C, .]
    q, k, v = (x.reshape(B, n, chunk_size, H, -1).permute(0, 3, 1, 2, 4) for x in (q, k, v))
    g, beta = (x.reshape(B, n, chunk_size, H).permute(0, 3, 1, 2) for x in (g, beta))
    c = g.cumsum(-1)
    idx = torch.arange(chunk_size, device=q.device)
    incl = idx[:, None] >= idx[None, :]
    strict = idx[:, None] > idx[None, :]
    eye = torch.eye(chunk_size, device=q.device)
    s = state.float().clone()
    outs = []
    for i in range(n):
        qi, ki, vi, ci, bi = q[:, :, i], k[:, :, i], v[:, :, i], c[:, :, i], beta[:, :, i]
        diff = ci[..., :, None] - ci[..., None, :]
        decay = torch.where(incl, diff, torch.full_like(diff, -torch.inf)).exp()  # exp(c_t - c_j), j <= t
        kk = ki @ ki.transpose(-1, -2)
        lower = torch.where(strict, bi[..., :, None] * decay * kk, torch.zeros_like(kk))
        rhs = bi[..., None] * (vi - ci.exp()[..., None] * (ki @ s))
        u = torch.linalg.solve_triangular(eye + lower, rhs, upper=False, unitriangular=True)
        o = ci.exp()[..., None] * (qi @ s) + ((qi @ ki.transpose(-1, -2)) * decay) @ u
        outs.append(o * scale)
        last = ci[..., -1:]
        s = last.exp()[..., None] * s + (ki * (last - ci).exp()[..., None]).transpose(-1, -2) @ u
    o = torch.stack(outs, 2).reshape(B, H, n * chunk_size, V).transpose(1, 2)[:, :T]
    return o.to(out_dtype), s


def fla_kernel(q, k, v, g, beta, state):
    """fla's Triton kernels (CUDA). Token-serial kernel for short inputs, chunked otherwise."""
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule, fused_recurrent_gated_delta_rule

    fn = fused_recurrent_gated_delta_rule if q.shape[1] <= 64 else chunk_gated_delta_rule
    o, s = fn(
        q, k, v, g=g.float(), beta=beta,
        initial_state=state.float(),
        output_final_state=True,
        use_qk_l2norm_in_kernel=True,
    )
    return o.to(v.dtype), s.float()
