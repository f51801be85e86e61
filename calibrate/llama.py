"""The project's own Llama-architecture decoder in torch, built from a `roofline.ModelSpec`.

One module per weight matrix of the spec (`spec.attention_matrices()`, `spec.mlp_matrices(False)`):
a fused QKV projection ((H_q + 2·H_kv)·d x h), the output projection (h x H_q·d), a fused
gate+up projection (2f x h), the down projection (h x f), two RMSNorms per layer, a final
RMSNorm, the embedding table and the LM head (absent when tied). So
`sum(p.numel() for p in model.parameters()) == spec.param_count` (Llama-3.1-8B: 8,030,261,248),
and the kernels it runs are the operators `roofline.ops.forward_ops` counts: per layer a norm,
the QKV GEMM, RoPE + KV-cache write, attention (SDPA: flash on a GPU), the O GEMM, a norm,
gate+up GEMM, SiLU·mul, down GEMM; the LM head on the last position only.

Weights are random (no download): timing does not depend on their values. The KV cache is
static: allocated once for batch x (prompt + output) tokens; prefill writes positions
[0, S) and each decode step writes one position and attends to all positions so far.
"""

from __future__ import annotations

from roofline.errors import SpecError
from roofline.specs import ModelSpec


def check_supported(spec: ModelSpec) -> None:
    """One-line SpecError for specs this implementation does not build (MoE, MLA, windows, ...)."""
    problems = []
    if spec.moe is not None:
        problems.append("MoE")
    if spec.mla is not None:
        problems.append("MLA attention")
    if spec.ffn_kind != "gated":
        problems.append("a plain (non-gated) MLP")
    if spec.norm != "rmsnorm" or spec.norm_bias:
        problems.append("LayerNorm")
    if spec.position_embedding != "rope":
        problems.append(f"{spec.position_embedding} positions")
    if spec.parallel_blocks:
        problems.append("parallel blocks")
    if spec.qk_norm:
        problems.append("QK-norm")
    if set(spec.attention_pattern) != {"full"} or spec.kv_share_factor != 1:
        problems.append("sliding-window or shared-KV layers")
    if spec.n_norms_per_layer != 2:
        problems.append(f"{spec.n_norms_per_layer} norms per layer")
    if spec.lm_head_bias:
        problems.append("an LM-head bias")
    if problems:
        raise SpecError("model", f"{spec.name} has {', '.join(problems)}; the validated implementations (fast, hf, own) "
                                 "build dense Llama-architecture specs: choose another model")


def build(spec: ModelSpec, dtype, device):
    """The torch module for `spec` with random weights, on `device` in `dtype`, in eval mode."""
    import torch
    from torch import nn

    check_supported(spec)
    h, hq, hkv, d, f = spec.hidden_size, spec.num_attention_heads, spec.num_kv_heads, spec.head_dim, spec.intermediate_size

    class RMSNorm(nn.Module):
        def __init__(self, width: int, eps: float = 1e-5):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(width))
            self.eps = eps

        def forward(self, x):
            var = x.float().pow(2).mean(-1, keepdim=True)
            return (x.float() * torch.rsqrt(var + self.eps)).to(x.dtype) * self.weight

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.input_norm = RMSNorm(h)
            self.qkv_proj = nn.Linear(h, (hq + 2 * hkv) * d, bias=spec.qkv_bias)
            self.o_proj = nn.Linear(hq * d, h, bias=spec.o_bias)
            self.post_norm = RMSNorm(h)
            self.gate_up_proj = nn.Linear(h, 2 * f, bias=spec.mlp_bias)
            self.down_proj = nn.Linear(f, h, bias=spec.mlp_bias)

        def forward(self, x, cos, sin, k_cache, v_cache, start: int):
            b, s, _ = x.shape
            qkv = self.qkv_proj(self.input_norm(x))
            q, k, v = qkv.split([hq * d, hkv * d, hkv * d], dim=-1)
            q = q.view(b, s, hq, d).transpose(1, 2)
            k = k.view(b, s, hkv, d).transpose(1, 2)
            v = v.view(b, s, hkv, d).transpose(1, 2)
            q, k = _rope(q, cos, sin), _rope(k, cos, sin)
            k_cache[:, :, start:start + s] = k
            v_cache[:, :, start:start + s] = v
            keys, values = k_cache[:, :, :start + s], v_cache[:, :, :start + s]
            if hq != hkv:
                keys = keys.repeat_interleave(hq // hkv, dim=1)
                values = values.repeat_interleave(hq // hkv, dim=1)
            att = torch.nn.functional.scaled_dot_product_attention(q, keys, values, is_causal=s > 1 and start == 0)
            x = x + self.o_proj(att.transpose(1, 2).reshape(b, s, hq * d))
            gate, up = self.gate_up_proj(self.post_norm(x)).chunk(2, dim=-1)
            return x + self.down_proj(torch.nn.functional.silu(gate) * up)

    def _rope(x, cos, sin):
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin

    class Llama(nn.Module):
        """Decoder-only transformer; `prefill` and `decode_step` share one static KV cache."""

        def __init__(self):
            super().__init__()
            self.spec = spec
            self.embed = nn.Embedding(spec.vocab_size, h)
            self.layers = nn.ModuleList(Layer() for _ in range(spec.num_layers))
            self.final_norm = RMSNorm(h)
            self.lm_head = None if spec.tied_embeddings else nn.Linear(h, spec.vocab_size, bias=False)
            self.cache = None
            inv = 1.0 / (500000.0 ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
            self.register_buffer("inv_freq", inv, persistent=False)

        def allocate_cache(self, batch: int, max_tokens: int):
            p = next(self.parameters())
            shape = (spec.num_layers, 2, batch, hkv, max_tokens, d)
            self.cache = torch.zeros(shape, dtype=p.dtype, device=p.device)

        def _angles(self, start: int, s: int):
            pos = torch.arange(start, start + s, device=self.inv_freq.device, dtype=torch.float32)
            ang = torch.outer(pos, self.inv_freq)
            ang = torch.cat([ang, ang], dim=-1)
            dt = self.embed.weight.dtype
            return ang.cos().to(dt)[None, None], ang.sin().to(dt)[None, None]

        def forward(self, tokens, start: int):
            x = self.embed(tokens)
            cos, sin = self._angles(start, tokens.shape[1])
            for i, layer in enumerate(self.layers):
                x = layer(x, cos, sin, self.cache[i, 0], self.cache[i, 1], start)
            last = self.final_norm(x[:, -1])
            head = self.embed.weight if self.lm_head is None else self.lm_head.weight
            return torch.nn.functional.linear(last, head)  # logits of the last position only

    model = Llama().to(device=device, dtype=dtype).eval()
    model.inv_freq = model.inv_freq.float()
    return model


def param_count(model) -> int:
    """Stored parameters, shared tensors once (tied embeddings)."""
    return sum(p.numel() for p in model.parameters())
