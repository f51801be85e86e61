"""The fair reference engine: a gpt-fast-style Llama decoder that runs the kernels the roofline counts.

Why a second implementation. The eager ones (`llama.py`, Hugging Face) launch 40+ kernels per layer
from Python, copy the grouped K/V cache every step (`repeat_interleave` / `repeat_kv`) and run no
CUDA graph: a batch-1 error against them is launch overhead and a long-context error is K/V copies,
neither of which the roofline models. This one removes both, as inference engines do:

* **static KV cache**, one (B, H_kv, T, d) tensor per layer for K and for V, allocated once;
  positions are a device tensor, so a decode step has fixed shapes and can be captured;
* **fused projections**: one QKV GEMM ((H_q + 2·H_kv)·d x h) and one gate+up GEMM (2f x h),
  so per layer the GEMMs are exactly the roofline's four (QKV, O, gate+up, down);
* **GQA without copies**: prefill runs `scaled_dot_product_attention(..., enable_gqa=True)` on the
  grouped K/V, on CUDA inside `sdpa_kernel([one backend])`: flash, checked once per model
  (`prefill_backend`; if this torch's flash refused GQA, cuDNN or memory-efficient, never math, and
  `model.prefill_attention` and every result row say which), so no silent fallback; decode runs
  a grouped kernel: the G = H_q / H_kv query heads of a group are the rows of one batched GEMM
  against that group's K (`baddbmm`, the mask and the 1/sqrt(d) scale fused into it), a softmax,
  and a batched GEMM against V. K and V are read once per step, straight from the cache;
* **decode replayed from CUDA graphs** (explicit `torch.cuda.CUDAGraph` capture, no inductor: a
  graph per KV-length bucket of `kv_bucket_tokens`, so a step attends to the cache rounded up to
  the bucket, at most bucket - 1 masked tokens more than the context). On the CPU there are no
  graphs: decode runs eagerly and every result says so (`decode_mode: "eager (cpu)"`).

Precisions (`PRECISIONS`): `bf16` (fp32 on the CPU); `fp8`, W8A8 e4m3 through `torch._scaled_mm`
with fast accumulation: `fp8_scales="tensor"` (the default) quantizes weights per tensor and activations
with a static per-tensor scale set by one calibration pass over a prompt (`calibrate_fp8`), as static-FP8
checkpoints ship; `"row"` quantizes weights per output row and activations per token, dynamically; `int8`,
weight-only with per-row scales through `torch._weight_int8pack_mm` where this torch has that kernel
for the device (`precision_support` says why not otherwise). Attention and the KV cache stay bf16.

Weights are random and made on the target device (`with torch.device(device)`): an 8B model takes
a second on a GPU, never a download. `plain_logits` is the textbook forward pass (no cache, K/V
repeated per group, an explicit causal mask) over the same weights: the numerical reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from roofline.errors import SpecError
from roofline.specs import ModelSpec

from .llama import check_supported

FP8_MAX = 448.0  # largest finite float8_e4m3fn
PRECISIONS = ("bf16", "fp8", "int8")
# roofline Deployment of each precision: weight, activation (GEMM input) and KV-cache formats
DEPLOYMENT_DTYPES = {"bf16": ("bf16", "bf16", "bf16"), "fp32": ("fp32", "fp32", "fp32"),
                     "fp8": ("fp8", "fp8", "bf16"), "int8": ("int8", "bf16", "bf16")}
ROPE_THETA = 500000.0


@dataclass(frozen=True)
class Support:
    """Whether a precision runs here, how, and why not."""

    ok: bool
    how: str  # the kernel path, e.g. "torch._scaled_mm (fp8 e4m3, use_fast_accum)"
    reason: str = ""


def precision_support(precision: str, device: str) -> Support:
    """Probe the kernels of one precision on `device` with a 32 x 64 x 64 product; the reason when they fail."""
    import torch

    if precision not in PRECISIONS + ("fp32",):
        raise SpecError("precision", f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision in ("bf16", "fp32"):
        return Support(True, f"torch.nn.functional.linear ({precision})")
    if precision == "fp8":
        if not hasattr(torch, "_scaled_mm") or not hasattr(torch, "float8_e4m3fn"):
            return Support(False, "", "this torch has no torch._scaled_mm / float8_e4m3fn")
        if device == "cuda":
            cc = torch.cuda.get_device_capability()
            if cc < (8, 9):
                return Support(False, "", f"fp8 tensor cores need compute capability >= 8.9; this GPU is {cc[0]}.{cc[1]}")
        try:
            with torch.device(device):
                a = torch.randn(32, 64).to(torch.float8_e4m3fn)
                b = torch.randn(48, 64).to(torch.float8_e4m3fn)
                one = torch.ones((), dtype=torch.float32)
                torch._scaled_mm(a, b.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16, use_fast_accum=True)
        except Exception as exc:  # noqa: BLE001  an unsupported kernel is a reason, not a crash
            if device == "cpu":
                return Support(True, "fp8 e4m3 quantized, product emulated in fp32 (this CPU torch has no _scaled_mm: "
                                     f"{_first_line(exc)})")
            return Support(False, "", f"torch._scaled_mm failed: {_first_line(exc)}")
        try:  # a decode GEMM has as many rows as sequences: does M = 1 run, or must rows be padded to 16?
            with torch.device(device):
                torch._scaled_mm(a[:1], b.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16, use_fast_accum=True)
        except Exception:  # noqa: BLE001
            return Support(True, "torch._scaled_mm (fp8 e4m3 weights and activations, fp32 scales, use_fast_accum=True; "
                                 "rows padded to multiples of 16)")
        return Support(True, "torch._scaled_mm (fp8 e4m3 weights and activations, fp32 scales, use_fast_accum=True)")
    # int8 weight-only
    if not hasattr(torch, "_weight_int8pack_mm"):
        return Support(False, "", "this torch has no torch._weight_int8pack_mm (int8 weight-only kernel)")
    try:
        with torch.device(device):
            dt = torch.bfloat16
            torch._weight_int8pack_mm(torch.randn(4, 64, dtype=dt), torch.randint(-127, 127, (48, 64), dtype=torch.int8),
                                      torch.rand(48, dtype=dt))
    except Exception as exc:  # noqa: BLE001
        return Support(False, "", f"torch._weight_int8pack_mm has no {device} kernel here: {_first_line(exc)}")
    return Support(True, "torch._weight_int8pack_mm (int8 weights, per-row bf16 scales, bf16 activations)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0][:160] if text else ''}"


def build(spec: ModelSpec, precision: str = "bf16", device: str = "cpu", fp8_scales: str = "tensor", seed: int = 0):
    """The reference model for `spec` with random weights, made on `device`: activations, norms, embedding and KV
    cache in bf16 (fp32 for `precision="fp32"`, the CPU numerics check), linear weights in `precision`."""
    import torch
    from torch import nn

    check_supported(spec)
    sup = precision_support(precision, device)
    if not sup.ok:
        raise SpecError("precision", f"{precision} cannot run on {device}: {sup.reason}")
    if fp8_scales not in ("row", "tensor"):
        raise SpecError("fp8_scales", f"must be 'row' or 'tensor', got {fp8_scales!r}")
    dt = torch.float32 if precision == "fp32" else torch.bfloat16
    h, hq, hkv, d, f = spec.hidden_size, spec.num_attention_heads, spec.num_kv_heads, spec.head_dim, spec.intermediate_size
    emulate_fp8 = precision == "fp8" and "emulated" in sup.how
    pad_rows = precision == "fp8" and "padded" in sup.how

    def rand(n, k):
        # N(0, 1/k): activations keep unit scale through every product; values random (never zeros: METHOD.md)
        return torch.randn(n, k, dtype=dt) / math.sqrt(k)

    class Fp8Linear(nn.Module):
        """y = (x / s_x)_fp8 · (W / s_w)_fp8ᵀ · s_x · s_w: one `_scaled_mm` with fp32 scales and fast accumulation."""

        def __init__(self, n, k):
            super().__init__()
            w = rand(n, k)
            amax = w.abs().amax(dim=1, keepdim=True) if fp8_scales == "row" else w.abs().amax().reshape(1, 1)
            scale = (amax.float() / FP8_MAX).clamp(min=1e-12)
            self.register_buffer("weight", (w.float() / scale).to(torch.float8_e4m3fn))  # (N, K) row-major
            # _scaled_mm wants scale_b (1, N) for row-wise and a 0-d tensor per tensor
            self.register_buffer("w_scale", scale.reshape(1, n) if fp8_scales == "row" else scale.reshape(()))
            self.register_buffer("x_scale", torch.ones((), dtype=torch.float32))  # set by calibrate_fp8
            self.register_buffer("x_inv", torch.ones((), dtype=torch.float32))
            self.observe = False
            self.n, self.k = n, k

        def dequantized(self):
            return self.weight.float() * self.w_scale.reshape(-1, 1) if fp8_scales == "row" else self.weight.float() * self.w_scale

        def forward(self, x):
            lead = x.shape[:-1]
            x2 = x.reshape(-1, self.k)
            if fp8_scales == "row":  # dynamic per-token scales: amax of each row, as engines' per-token FP8
                sa = (x2.abs().amax(dim=-1, keepdim=True).float() / FP8_MAX).clamp(min=1e-12)
                xq = (x2 / sa).to(torch.float8_e4m3fn)
            else:
                if self.observe:  # calibration pass: keep the largest |x| seen; compute with unquantized inputs
                    self.x_scale.copy_(torch.maximum(self.x_scale, x2.abs().amax().float() / FP8_MAX))
                    return (x2.float() @ self.dequantized().t()).to(torch.bfloat16).reshape(*lead, self.n)
                # static per-tensor scale, saturating as engines' quantize kernels do (e4m3fn has no inf: an
                # overflow would be NaN); one fused kernel under a compiler, three eager
                sa = self.x_scale
                xq = (x2 * self.x_inv).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
            if emulate_fp8:
                y = (xq.float() * sa) @ self.dequantized().t()
                return y.to(torch.bfloat16).reshape(*lead, self.n)
            m = xq.shape[0]
            if pad_rows and m % 16:
                xq = torch.nn.functional.pad(xq.view(torch.int8), (0, 0, 0, 16 - m % 16)).view(torch.float8_e4m3fn)
                if sa.dim() == 2:
                    sa = torch.nn.functional.pad(sa, (0, 0, 0, 16 - m % 16), value=1.0)
            y = torch._scaled_mm(xq, self.weight.t(), scale_a=sa, scale_b=self.w_scale, out_dtype=torch.bfloat16,
                                 use_fast_accum=True)
            return y[:m].reshape(*lead, self.n)

    class Int8Linear(nn.Module):
        """Weight-only int8: W = q · s per output row, y = x · Wᵀ in one `_weight_int8pack_mm`."""

        def __init__(self, n, k):
            super().__init__()
            w = rand(n, k).float()
            scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
            self.register_buffer("weight", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
            self.register_buffer("scales", scale.to(torch.bfloat16))
            self.n, self.k = n, k

        def dequantized(self):
            return self.weight.float() * self.scales.float()[:, None]

        def forward(self, x):
            lead = x.shape[:-1]
            return torch._weight_int8pack_mm(x.reshape(-1, self.k), self.weight, self.scales).reshape(*lead, self.n)

    class Linear(nn.Module):
        def __init__(self, n, k):
            super().__init__()
            self.weight = nn.Parameter(rand(n, k), requires_grad=False)

        def dequantized(self):
            return self.weight.float()

        def forward(self, x):
            return torch.nn.functional.linear(x, self.weight)

    lin = {"fp8": Fp8Linear, "int8": Int8Linear}.get(precision, Linear)

    def rms_norm(x, weight, eps=1e-5):
        if hasattr(torch.nn.functional, "rms_norm"):
            return torch.nn.functional.rms_norm(x, (x.shape[-1],), weight, eps)
        var = x.float().pow(2).mean(-1, keepdim=True)
        return (x.float() * torch.rsqrt(var + eps)).to(x.dtype) * weight

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.input_norm = nn.Parameter(torch.ones(h, dtype=dt), requires_grad=False)
            self.qkv_proj = lin((hq + 2 * hkv) * d, h)
            self.o_proj = lin(h, hq * d)
            self.post_norm = nn.Parameter(torch.ones(h, dtype=dt), requires_grad=False)
            self.gate_up_proj = lin(2 * f, h)
            self.down_proj = lin(h, f)

    class FastLlama(nn.Module):
        """`prefill(tokens)` and `decode(tokens, pos, kv_len)` over one static cache (see the module docstring)."""

        def __init__(self):
            super().__init__()
            self.spec, self.precision, self.support, self.dtype = spec, precision, sup, dt
            self.prefill_attention = "default SDPA dispatch (cpu)" if backend is None else backend.name
            self.fp8_scales = fp8_scales if precision == "fp8" else None
            self.embed = nn.Parameter(torch.randn(spec.vocab_size, h, dtype=dt), requires_grad=False)
            self.layers = nn.ModuleList(Layer() for _ in range(spec.num_layers))
            self.final_norm = nn.Parameter(torch.ones(h, dtype=dt), requires_grad=False)
            # The LM head: in fp8/int8 quantized like every other linear layer, as the roofline counts it (ops.py
            # times lm_head in the weight format); a tied one keeps the bf16 table for the embedding gather.
            # In bf16 a tied head is the embedding itself.
            self.lm_head = None if spec.tied_embeddings else nn.Parameter(rand(spec.vocab_size, h), requires_grad=False)
            self.head_q = lin(spec.vocab_size, h) if precision in ("fp8", "int8") else None
            if self.head_q is not None:
                self.lm_head = None
            self.k_cache: list = []
            self.v_cache: list = []
            self.rope = None

        # ---------------------------------------------------------------- cache and positions
        def allocate_cache(self, batch: int, max_tokens: int):
            dev = self.embed.device
            self.k_cache = [torch.zeros(batch, hkv, max_tokens, d, dtype=dt, device=dev) for _ in self.layers]
            self.v_cache = [torch.zeros(batch, hkv, max_tokens, d, dtype=dt, device=dev) for _ in self.layers]
            inv = 1.0 / (ROPE_THETA ** (torch.arange(0, d, 2, dtype=torch.float32, device=dev) / d))
            ang = torch.outer(torch.arange(max_tokens, dtype=torch.float32, device=dev), inv)
            self.rope = torch.polar(torch.ones_like(ang), ang)  # (T, d/2) complex64: e^{i·pos·θ_j}
            self.max_tokens = max_tokens

        def _rope(self, qk, pos):
            """Rotate the (b, s, heads, d) queries and keys by their positions: interleaved pairs as complex numbers."""
            b, s, n, _ = qk.shape
            x = torch.view_as_complex(qk.float().reshape(b, s, n, d // 2, 2))
            rot = self.rope.index_select(0, pos).reshape(1, s, 1, d // 2)
            return torch.view_as_real(x * rot).reshape(b, s, n, d).to(self.k_cache[0].dtype)

        # ---------------------------------------------------------------- one pass
        def _layer(self, i, layer, x, pos, kv_len, mask):
            b, s, _ = x.shape
            qkv = layer.qkv_proj(rms_norm(x, layer.input_norm))
            qk = self._rope(qkv[..., : (hq + hkv) * d].reshape(b, s, hq + hkv, d), pos)
            v = qkv[..., (hq + hkv) * d:].reshape(b, s, hkv, d)
            kc, vc = self.k_cache[i], self.v_cache[i]
            kc.index_copy_(2, pos, qk[:, :, hq:].transpose(1, 2))
            vc.index_copy_(2, pos, v.transpose(1, 2))
            if kv_len is None:  # prefill from position 0: causal attention over the fresh grouped K/V
                att = _prefill_attention(qk[:, :, :hq].transpose(1, 2), qk[:, :, hq:].transpose(1, 2), v.transpose(1, 2))
                att = att.transpose(1, 2).reshape(b, s, hq * d)
            else:  # decode: one query per sequence against the first kv_len cached positions
                att = _decode_attention(qk[:, 0, :hq], kc, vc, kv_len, mask, hkv, d).reshape(b, 1, hq * d)
            x = x + layer.o_proj(att.to(x.dtype))
            gate, up = layer.gate_up_proj(rms_norm(x, layer.post_norm)).chunk(2, dim=-1)
            return x + layer.down_proj(torch.nn.functional.silu(gate) * up)

        def _logits(self, x):
            last = rms_norm(x[:, -1], self.final_norm)
            if self.head_q is not None:
                return self.head_q(last)
            head = self.embed if self.lm_head is None else self.lm_head
            return torch.nn.functional.linear(last, head)

        def prefill(self, tokens):
            """Logits of the last position after writing positions [0, S) of the cache."""
            pos = torch.arange(tokens.shape[1], device=tokens.device)
            x = torch.nn.functional.embedding(tokens, self.embed)
            for i, layer in enumerate(self.layers):
                x = self._layer(i, layer, x, pos, None, None)
            return self._logits(x)

        def decode(self, tokens, pos, kv_len: int):
            """Logits after one token per sequence at position `pos` (a 1-element device tensor); reads kv_len cached positions."""
            mask = torch.where(torch.arange(kv_len, device=pos.device) <= pos, 0.0, float("-inf")).to(self.k_cache[0].dtype)
            x = torch.nn.functional.embedding(tokens, self.embed)
            for i, layer in enumerate(self.layers):
                x = self._layer(i, layer, x, pos, kv_len, mask.reshape(1, 1, kv_len))
            return self._logits(x)

        def linears(self):
            return [m for m in self.modules() if isinstance(m, (Fp8Linear, Int8Linear, Linear))]

    backend = prefill_backend(device, hq, hkv, d, dt)

    def _prefill_attention(q, k, v):
        sdpa = torch.nn.functional.scaled_dot_product_attention
        if backend is not None:
            from torch.nn.attention import sdpa_kernel

            with sdpa_kernel([backend]):  # this backend alone: another would raise, so the kernel that runs is known
                return sdpa(q, k, v, is_causal=True, enable_gqa=True)
        return sdpa(q, k, v, is_causal=True, enable_gqa=True)

    def _decode_attention(q, kc, vc, kv_len, mask, groups_kv, head_dim):
        """q (b, H_q, d) against cache (b, H_kv, T, d)[:, :, :kv_len]: the G query heads of a group share one K/V read."""
        b = q.shape[0]
        g = q.shape[1] // groups_kv
        qg = q.reshape(b * groups_kv, g, head_dim)
        k = kc[:, :, :kv_len].reshape(b * groups_kv, kv_len, head_dim)  # a view: no copy of the cache
        v = vc[:, :, :kv_len].reshape(b * groups_kv, kv_len, head_dim)
        scores = torch.baddbmm(mask, qg.to(k.dtype), k.transpose(1, 2), alpha=1.0 / math.sqrt(head_dim))
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(v.dtype)
        return torch.bmm(probs, v)  # (b·H_kv, G, d) = (b, H_q, d) in head order

    torch.manual_seed(seed)
    with torch.device(device):
        model = FastLlama().eval()
    return model


PREFILL_BACKEND_ORDER = ("FLASH_ATTENTION", "CUDNN_ATTENTION", "EFFICIENT_ATTENTION")


def prefill_backend(device: str, hq: int, hkv: int, d: int, dtype):
    """The SDPA backend prefill runs on CUDA: flash when it takes causal GQA at these heads, else the first of
    cuDNN and memory-efficient that does (each tried alone on a 2 x 128-token probe); None on the CPU.
    Never the math backend: it materialises the score matrix and repeats K/V, which the roofline does not count."""
    import torch

    if device != "cuda":
        return None
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q = torch.randn(2, hq, 128, d, device=device, dtype=dtype)
    k = torch.randn(2, hkv, 128, d, device=device, dtype=dtype)
    reasons = []
    for name in PREFILL_BACKEND_ORDER:
        b = getattr(SDPBackend, name, None)
        if b is None:
            continue
        try:
            with sdpa_kernel([b]):
                torch.nn.functional.scaled_dot_product_attention(q, k, k, is_causal=True, enable_gqa=True)
            return b
        except RuntimeError as exc:
            reasons.append(f"{name}: {_first_line(exc)}")
    raise SpecError("attention", "no fused SDPA backend takes causal GQA here (" + "; ".join(reasons) + ")")


def calibrate_fp8(model, tokens) -> None:
    """Set each FP8 layer's static activation scale from the largest |x| of one prefill (as static-FP8 checkpoints do)."""
    import torch

    fp8 = [m for m in model.linears() if hasattr(m, "x_scale")]
    if not fp8 or model.fp8_scales != "tensor":
        return
    for m in fp8:
        m.observe = True
        m.x_scale.fill_(1e-12)
    model.allocate_cache(tokens.shape[0], tokens.shape[1])
    with torch.inference_mode():
        model.prefill(tokens)
    for m in fp8:
        m.observe = False
        m.x_inv.copy_(1.0 / m.x_scale)


def plain_logits(model, tokens):
    """The textbook forward pass over the model's (dequantized) weights in fp32: no cache, K/V repeated per
    group, an explicit causal mask, half-precision nowhere. Logits of every position, (b, s, vocab)."""
    import torch

    spec = model.spec
    hq, hkv, d = spec.num_attention_heads, spec.num_kv_heads, spec.head_dim
    b, s = tokens.shape
    x = model.embed.float()[tokens]
    inv = 1.0 / (ROPE_THETA ** (torch.arange(0, d, 2, dtype=torch.float64, device=tokens.device) / d))
    ang = torch.outer(torch.arange(s, dtype=torch.float64, device=tokens.device), inv)
    cos, sin = ang.cos().float(), ang.sin().float()

    def norm(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w.float()

    def rope(t):  # (b, s, n, d), pairs (2j, 2j+1) rotated by pos·θ_j
        a, c = t[..., 0::2], t[..., 1::2]
        out = torch.empty_like(t)
        out[..., 0::2] = a * cos[None, :, None] - c * sin[None, :, None]
        out[..., 1::2] = a * sin[None, :, None] + c * cos[None, :, None]
        return out

    causal = torch.full((s, s), float("-inf"), device=tokens.device).triu(1)
    for layer in model.layers:
        qkv = norm(x, layer.input_norm) @ layer.qkv_proj.dequantized().t()
        q = rope(qkv[..., : hq * d].reshape(b, s, hq, d)).transpose(1, 2)
        k = rope(qkv[..., hq * d:(hq + hkv) * d].reshape(b, s, hkv, d)).transpose(1, 2)
        v = qkv[..., (hq + hkv) * d:].reshape(b, s, hkv, d).transpose(1, 2)
        k, v = k.repeat_interleave(hq // hkv, dim=1), v.repeat_interleave(hq // hkv, dim=1)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d) + causal, dim=-1) @ v
        x = x + att.transpose(1, 2).reshape(b, s, hq * d) @ layer.o_proj.dequantized().t()
        gate, up = (norm(x, layer.post_norm) @ layer.gate_up_proj.dequantized().t()).chunk(2, dim=-1)
        x = x + (torch.nn.functional.silu(gate) * up) @ layer.down_proj.dequantized().t()
    if model.head_q is not None:
        head = model.head_q.dequantized()
    else:
        head = (model.embed if model.lm_head is None else model.lm_head).float()
    return norm(x, model.final_norm) @ head.t()


def param_count(model) -> int:
    """Stored weight elements (quantized ones included, scales and norms' ones too): equals spec.param_count."""
    untied_head = model.lm_head if model.head_q is None else (None if model.spec.tied_embeddings else model.head_q.weight)
    n = model.embed.numel() + model.final_norm.numel() + (0 if untied_head is None else untied_head.numel())
    for layer in model.layers:
        n += layer.input_norm.numel() + layer.post_norm.numel()
        n += sum(m.weight.numel() for m in (layer.qkv_proj, layer.o_proj, layer.gate_up_proj, layer.down_proj))
    return n


class Runner:
    """Generation with the reference model: eager prefill, then decode steps replayed from CUDA graphs.

    One graph per KV-length bucket: a step at position p (0-based) reads kv_len = ceil((p + 1) / bucket)
    · bucket cached positions, the ones past p masked. Graphs are captured before the timed run
    (`prepare`), never inside it; capture re-runs one step on a side stream first, as
    `torch.cuda.graphs` requires, and restores the token and position it advanced. On the CPU (or
    with graphs=False) the same step runs eagerly.
    """

    def __init__(self, model, graphs: bool | None = None, kv_bucket_tokens: int = 32):
        if kv_bucket_tokens < 1:
            raise SpecError("kv_bucket_tokens", f"must be at least 1, got {kv_bucket_tokens}")
        self.model = model
        self.device = model.embed.device.type
        self.graphs = (self.device == "cuda") if graphs is None else graphs
        if self.graphs and self.device != "cuda":
            raise SpecError("graphs", "CUDA graphs need a CUDA device")
        self.bucket = kv_bucket_tokens
        self.shape = None
        self._cache = None
        self._graphs: dict = {}
        self._pool = None

    @property
    def decode_mode(self) -> str:
        return "cuda_graph" if self.graphs else f"eager ({self.device})"

    def kv_len(self, position: int) -> int:
        """Cached positions a step at `position` reads: position + 1 rounded up to the bucket."""
        return -(-(position + 1) // self.bucket) * self.bucket

    def allocate(self, batch: int, max_tokens: int) -> None:
        """Cache for batch x max_tokens (rounded up to the bucket) and the static token/position buffers; drops old graphs."""
        import torch

        cap = self.kv_len(max_tokens - 1)
        if self.shape == (batch, cap) and self._cache is self.model.k_cache:  # graphs still point at this cache
            return
        self._graphs.clear()
        self.model.allocate_cache(batch, cap)
        dev = self.model.embed.device
        self.tok = torch.zeros(batch, 1, dtype=torch.long, device=dev)
        self.pos = torch.zeros(1, dtype=torch.long, device=dev)
        self.host_pos = 0
        self.shape = (batch, cap)
        self._cache = self.model.k_cache

    def _body(self, kv_len: int) -> None:
        logits = self.model.decode(self.tok, self.pos, kv_len)
        self.tok.copy_(logits.argmax(-1, keepdim=True))
        self.pos.add_(1)

    def _capture(self, kv_len: int):
        import torch

        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        tok, pos = self.tok.clone(), self.pos.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            self._body(kv_len)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph, pool=self._pool):
            self._body(kv_len)
        self.tok.copy_(tok)
        self.pos.copy_(pos)
        torch.cuda.synchronize()
        return graph

    def prepare(self, prompt: int, output: int) -> int:
        """Capture every graph the decode steps of this generation replay; returns how many were new."""
        if not self.graphs:
            return 0
        new = 0
        for p in range(prompt, prompt + max(output - 1, 0)):
            length = self.kv_len(p)
            if length not in self._graphs:
                self._graphs[length] = self._capture(length)
                new += 1
        return new

    def prefill(self, tokens) -> None:
        import torch

        with torch.inference_mode():
            logits = self.model.prefill(tokens)
            self.tok.copy_(logits.argmax(-1, keepdim=True))
            self.pos.fill_(tokens.shape[1])
        self.host_pos = tokens.shape[1]

    def step(self) -> None:
        import torch

        length = self.kv_len(self.host_pos)
        if length > self.shape[1]:
            raise SpecError("output_tokens", f"position {self.host_pos} is past the allocated cache of {self.shape[1]} tokens")
        if self.graphs:
            self._graphs[length].replay()
        else:
            with torch.inference_mode():
                self._body(length)
        self.host_pos += 1

    def generate(self, tokens, output: int) -> tuple[float, list[float]]:
        """(TTFT, [seconds of each decode step]) of one generation of `output` tokens after `tokens`.

        TTFT: wall clock from a synchronized start to the synchronized end of prefill and the first
        token's argmax. Decode on CUDA: an event after each replay, one synchronize at the end, so a
        step's time is the GPU's time between events, host gaps included; on the CPU, wall clock.
        """
        import time

        import torch

        b, s = tokens.shape
        self.allocate(b, s + output)
        self.prepare(s, output)
        cuda = self.device == "cuda"
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        sync()
        t0 = time.perf_counter()
        self.prefill(tokens)
        sync()
        ttft = time.perf_counter() - t0
        n = output - 1
        if cuda:
            events = [torch.cuda.Event(enable_timing=True) for _ in range(n + 1)]
            events[0].record()
            for i in range(n):
                self.step()
                events[i + 1].record()
            torch.cuda.synchronize()
            steps = [events[i].elapsed_time(events[i + 1]) * 1e-3 for i in range(n)]
        else:
            steps = []
            for _ in range(n):
                t = time.perf_counter()
                self.step()
                steps.append(time.perf_counter() - t)
        return ttft, steps


def measure(runner: Runner, batch: int, prompt: int, output: int, reps: int, seed: int = 0) -> dict:
    """Median TTFT, TPOT and throughput over `reps` timed generations after one untimed one (same shapes)."""
    import statistics

    import torch

    gen = torch.Generator(device="cpu").manual_seed(seed)
    tokens = torch.randint(0, runner.model.spec.vocab_size, (batch, prompt), generator=gen).to(runner.model.embed.device)
    runner.generate(tokens, output)  # warm-up: graphs captured, kernels chosen, allocator primed
    ttfts, tpots, tputs = [], [], []
    for _ in range(reps):
        ttft, steps = runner.generate(tokens, output)
        ttfts.append(ttft)
        tpots.append(statistics.mean(steps) if steps else None)
        tputs.append(batch * output / (ttft + sum(steps)))
    tp = [t for t in tpots if t is not None]
    return {"measured_ttft_s": statistics.median(ttfts), "measured_tpot_s": statistics.median(tp) if tp else None,
            "measured_output_tokens_per_s": statistics.median(tputs), "ttft_samples_s": ttfts, "reps": reps,
            "decode_mode": runner.decode_mode, "kv_bucket_tokens": runner.bucket, "graphs_captured": len(runner._graphs),
            "prefill_attention": runner.model.prefill_attention, "gemm_kernel": runner.model.support.how}
