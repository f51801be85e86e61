"""Hugging Face `transformers` models built from a spec's config with random weights (no download).

`LlamaConfig` takes the spec's widths; `AutoModelForCausalLM.from_config` builds the model with
random weights, so nothing is fetched (HF_HUB_OFFLINE=1 is set as well). Decoding uses a
`StaticCache` of batch x (prompt + output) tokens, the layout `generate(cache_implementation=
"static")` uses. The parameter count equals `spec.param_count`, as for the own implementation.
HF's Llama puts one `attention_bias` on Q, K, V and O alike, so a spec whose QKV and O biases
differ (Qwen2) is refused.
"""

from __future__ import annotations

import os

from roofline.errors import SpecError
from roofline.specs import ModelSpec

from .llama import check_supported


def hf_config(spec: ModelSpec):
    """The `transformers.LlamaConfig` of a dense Llama-architecture spec."""
    check_supported(spec)
    if spec.qkv_bias != spec.o_bias:
        raise SpecError("model", f"{spec.name} has a QKV bias but no O bias; HF Llama biases all four projections alike")
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=spec.vocab_size, hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_kv_heads, head_dim=spec.head_dim, max_position_embeddings=spec.max_context,
        tie_word_embeddings=spec.tied_embeddings, attention_bias=spec.qkv_bias, mlp_bias=spec.mlp_bias,
        hidden_act="silu", rms_norm_eps=1e-5,
    )


def build(spec: ModelSpec, dtype, device):
    """The HF model with random weights made on `device` in `dtype`, eval mode, SDPA attention."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    try:
        from transformers import AutoModelForCausalLM
    except ImportError:
        raise SpecError("impl", "hf needs transformers; pip install roofline[calibrate] (or pip install transformers)") from None
    import torch

    cfg = hf_config(spec)
    cfg._attn_implementation = "sdpa"
    # made on the device: random initialisation of an 8B model on a CPU takes minutes (and transformers 5 runs it twice)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    return model.to(device).eval()


class HFRunner:
    """Prefill and decode steps of an HF model over a static KV cache."""

    def __init__(self, model):
        import inspect

        self.model = model
        self.cache = None
        # transformers renamed forward's `past_key_values` to `cache` (5.2x: the old name warns, and goes in 5.40); the
        # GPU image's 5.17 knows only the old one, so the runner passes the cache under the name this version takes
        params = inspect.signature(model.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"

    def allocate_cache(self, batch: int, max_tokens: int):
        from transformers import StaticCache

        self.cache = StaticCache(config=self.model.config, max_cache_len=max_tokens)
        self.batch = batch

    def __call__(self, tokens, start: int):
        import torch

        pos = torch.arange(start, start + tokens.shape[1], device=tokens.device)
        out = self.model(input_ids=tokens, cache_position=pos, use_cache=True, logits_to_keep=1,
                         **{self.cache_arg: self.cache})
        return out.logits[:, -1]
