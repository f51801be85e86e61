"""Attention work by shape: the causal tiles a flash kernel executes, its waves over the SMs, its decode work units.

**Prefill (and a prefill chunk).** A flash kernel (FlashAttention 2/3, FlashInfer, TensorRT-LLM's context FMHA) cuts
each (sequence, query head) into query tiles of T = 128 rows and streams the keys in tiles of T. A pass adding n
tokens after p cached ones has q = ceil(n / T) query tiles; key tile j is aligned to position 0, so query tile i
(i = 1 … q, covering positions p + T(i−1) + 1 … p + Ti) needs ceil((p + Ti) / T) = ceil(p / T) + i key tiles:
the tiles above the causal diagonal are skipped, the diagonal tiles run whole (their masked half computed and
discarded), and the last query tile runs T rows however few it holds. With a sliding window of w keys a query tile
reads at most ceil(w / T) + 1 key tiles. The executed (query, key) pairs per sequence and head are therefore

    pairs_exec = T² · Σ_{i=1..q} min(a + i, b),   a = ceil(p / T),  b = ceil(w / T) + 1  (b = ∞ without a window)

against the useful pairs Σ min(p + i, w) of `ops.attended_keys`. Worked numbers, p = 0: S = 256 gives q = 2,
T² · 3 = 49,152 executed for 32,896 useful pairs (67%); S = 8192 gives q = 64, T² · 2080 = 34.1 M for 33.6 M (98.5%).
A decode step (n = 1) runs split-KV kernels that stream exactly the visible keys, so its pairs stay the useful
ones (`executed_pairs` returns `attended_keys` there); its time is the bytes it reads (below).

**Waves.** One kernel launches batch · heads · q query-tile blocks (CTAs), run P at a time on P SMs: waves =
ceil(units / P), and the SMs are busy units / (waves · P) of the kernel's time. H100 (132 SMs), batch 1, 8 heads
(a tp-8 slice of 64), S = 2048: 8 · 16 = 128 tiles in one wave, 128 / 132 = 0.970 busy; batch 1, 4 heads, S = 1024:
32 tiles, 0.242. The SM-time the kernel occupies, at the rate of a full wave, is executed FLOPs / wave efficiency:
the x a calibrated prefill curve (`x_unit = "executed_flops"`) is fitted and timed over.

**Decode work units.** A decode kernel gives each (sequence, KV head) its own blocks (the query heads of a GQA
group share their KV head's reads), so its time is a fixed part, the KV bytes it streams, and a cost per
(sequence, KV head): t = t0 + B / R + batch · kv_heads · t_kvh (`calibration.Calibration.attention_decode_kv_head_s`).
MLA caches one latent per token, one "KV head" shared by every query head.

Pure functions of shape only (no fitted number, no hardware but the SM count); elementwise over numpy grids.
"""

from __future__ import annotations

import math

import numpy as np

TILE = 128  # query and key tile of the flash kernels on Ampere, Hopper and Blackwell (FA2/FA3, FlashInfer, TRT-LLM FMHA)


_SCALARS = (int, float)


def _scalar(*xs) -> bool:
    return all(type(x) in _SCALARS for x in xs)


def query_tiles(new_tokens):
    """q = ceil(n / T): query tiles of one (sequence, head) in a pass adding n tokens."""
    if _scalar(new_tokens):
        return float(math.ceil(new_tokens / TILE))
    return np.ceil(np.asarray(new_tokens, dtype=float) / TILE)


def _tile_pairs(q, a, window):
    """Σ_{i=1..q} min(a + i, b) key tiles, b = ceil(w / T) + 1 (∞ without a window)."""
    if window == math.inf:
        return q * a + q * (q + 1) / 2
    b = math.ceil(window / TILE) + 1
    below = np.clip(b - a, 0, q)  # query tiles whose key-tile span is still shorter than the window's
    if _scalar(q, a):
        below = float(below)
    return below * a + below * (below + 1) / 2 + (q - below) * b


def executed_pairs(new_tokens, past_tokens, window=math.inf):
    """(query, key) pairs the tiled kernel computes per sequence and head (module docstring); a decode step's
    (n = 1) are the visible keys, min(p + 1, w)."""
    if _scalar(new_tokens, past_tokens):
        if new_tokens <= 1:
            return float(min(past_tokens + 1, window))
        tiles = _tile_pairs(float(math.ceil(new_tokens / TILE)), float(math.ceil(past_tokens / TILE)), window)
        return float(TILE * TILE * tiles)
    n = np.asarray(new_tokens, dtype=float)
    p = np.asarray(past_tokens, dtype=float)
    tiles = _tile_pairs(np.ceil(n / TILE), np.ceil(p / TILE), window)
    return np.where(n > 1, TILE * TILE * tiles, np.minimum(p + 1, window))


def wave_efficiency(units, sms):
    """units / (ceil(units / P) · P): the busy fraction of P SMs running `units` blocks in waves; 1 with no units
    (a decode step) or no SM count (a profile without `sm_count`)."""
    if _scalar(units, sms):
        return units / (math.ceil(units / sms) * sms) if units > 0 and sms > 0 else 1.0
    u = np.asarray(units, dtype=float)
    p = np.asarray(sms, dtype=float)
    ok = (u > 0) & (p > 0)
    u_safe, p_safe = np.where(ok, u, 1.0), np.where(ok, p, 1.0)
    return np.where(ok, u_safe / (np.ceil(u_safe / p_safe) * p_safe), 1.0)


def prefill_query_tiles(batch, heads, new_tokens):
    """Blocks of one prefill kernel: batch · heads · ceil(n / T); 0 for a decode step (n = 1), which has no waves
    of query tiles to quantize."""
    if _scalar(batch, heads, new_tokens):
        return float(batch * heads * math.ceil(new_tokens / TILE)) if new_tokens > 1 else 0.0
    n = np.asarray(new_tokens, dtype=float)
    return np.where(n > 1, np.asarray(batch, dtype=float) * heads * np.ceil(n / TILE), 0.0)


def decode_kv_units(batch, kv_heads):
    """(sequence, KV head) work units of one decode kernel: batch · kv_heads (MLA: kv_heads = 1, the latent). A generic
    GQA decode kernel runs g blocks per unit, one per query head (`ops.decode_kv_reads`; the op multiplies by g)."""
    if _scalar(batch, kv_heads):
        return float(batch * kv_heads)
    return np.asarray(batch, dtype=float) * kv_heads
