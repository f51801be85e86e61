"""Continuous batching in steady state: batch, TTFT, TPOT and throughput of one replica under a request stream.

A replica runs iteration-level scheduling (Orca, vLLM): every engine step, each of the B sequences in the
decode batch adds one token, and prefill work of newly arrived requests is mixed in. Requests arrive as a
Poisson stream of λ requests/s with prompt lengths S and output lengths O drawn from `LengthDist`s.

Step times come from the same operator table as `predict` (`ops.forward_ops` timed by `roofline.time_ops`):

* t0(B) = a decode step of B sequences at the mean decode context
  c̄ = E[S] + E[O(O-1)] / (2 E[O-1])   (a request's decode steps see contexts S+1 .. S+O-1; time-averaged
  over the batch, weighted by each request's O-1 steps). Attention is affine in the context, so this is
  the mean attention cost, not an approximation of it.
* X(S) = one prefill pass of S tokens alone (whole-prompt prefill).
* tC(B) = a step of B decode tokens plus a C-token prefill chunk in **one** pass (chunked prefill): the
  GEMMs, norms and all-reduces run over B + C tokens and read the weights **once**; decode attention is
  that of t0; the chunk's attention is C times the mean attention time per prompt token
  E[attn(S)] / E[S]; the LM head runs on the B decode rows.

Steady state (per replica). Let a be the prefill time added per request:

* whole-prompt prefill (no chunking): a = E[X(S)]; prefill passes preempt decode, the engine spends a
  fraction ρ = λ·a of its time in them, and the mean decode step is t̄ = t0 / (1 - λa). An engine that
  chunks prefill but runs a prefill step alone (`EngineProfile.mixed_prefill_decode` false: SGLang's
  default scheduler) is this case too: its prefill steps preempt decode and read the weights themselves;
* chunked prefill with a budget of C tokens: a fraction f = λ E[S] t̄ / C of steps carry a chunk and
  cost tC, the others t0, so t̄ = t0 + f (tC - t0) = t0 / (1 - λa) with a = E[S] (tC - t0) / C.
* whole prompts in the decode step (`EngineProfile.mixed_prefill_decode` true, no chunking: TensorRT-LLM's
  in-flight batching): a step of B decode tokens that also carries a prompt of S tokens costs t0 + δ(B, S),
  δ(B, S) = lin(B + S) - lin(B) + attn(S) + h(B + 1) - h(B) (lin: the GEMMs, norms and all-reduces of a pass over
  that many tokens, read from the weights once; attn(S): the prompt's own attention). Against a pass of its own the
  step saves X(S) - δ(B, S), the weights read once, but once per step however many prompts it carries: λ t̄ =
  B / E[O-1] prompts arrive per step, so a fraction q(B) = 1 - exp(-B / E[O-1]) of steps carry any (a Poisson count
  at the mean step), and a = E[X] - E[X - δ] q(B) E[O-1] / B. One prompt a step (B ≪ E[O-1]): a → E[δ]; many:
  a → E[X].

Little's law on the decode batch (each request holds a slot for its O - 1 decode steps; the first token
comes out of prefill): B = λ · E[O-1] · t̄. Solving both for λ gives the request rate a batch B sustains:

    λ(B) = B / (E[O-1] · t0(B) + B · a(B))

which grows with B (t0(B)/B falls) until memory (the KV of B sequences at the 99th-percentile context)
or the prefill server (chunked: λ E[S] tC / C < 1) stops it: the replica's **capacity** is the largest λ
on that curve. A request rate above it is unstable (a finite run offered above it: `finite_overload`, `overload_run`). `steady_state` walks the curve on a batch grid and
interpolates the given λ; Little's law then gives B exactly.

TPOT is the mean step t̄ (every request sees the same mix of steps; each step gives every running sequence one
token, so the mean gap between its tokens is the mean step, not the length-biased one an arrival lands in);
`itl_max_s` is the worst gap between two tokens: tC with chunking, t0 + X(S_p99) without (a long prompt stalls the
whole batch), t0 + δ(B, S_max) for whole prompts in the decode step.

TTFT where prefill passes run alone (whole-prompt prefill without mixing, SGLang's default scheduler, pp or ep > 1):
TTFT = r + W + X(S), with r = t̄/2 the residual of the step in progress when a request arrives (r = 3t̄/2 under an
overlap scheduler, `EngineProfile.overlap_scheduler`: the CPU has already scheduled the next step, which runs first), and W the
wait of an M/G/1 queue (Pollaczek-Khinchine) whose server is the prefill: service X(S) (whole prompt), or
X(S) = S·tC/C with chunking (the prompt is served C tokens per chunked step):

    E[W] = λ E[X²] / (2 (1 - ρ)),  ρ = λ E[X]      (M/D/1 with a fixed prompt: ρ / (2μ(1-ρ)), μ = 1/X)

Mixed steps (pp = ep = 1; chunked prefill, or whole prompts in the decode step): the server is the step loop,
not a queue of single prompts. A prompt that arrives during step n - 1 joins step n (the scheduler picks the
running decodes and the waiting prompts for each step, TensorRT-LLM batch_manager/microBatchScheduler.cpp; vLLM
v1/core/sched/scheduler.py), and its first token leaves at the end of the step that takes its last prompt token,
a step that also decodes the B running sequences. Steps are T_n = t0 + the pieces of the prompts that arrived during
T_{n-1} (a Poisson count of mean λT_{n-1}; a piece δ: the whole prompt's, or one chunk's (tC - t0)/C a token), so

    m = E[T] = t0 / (1 - ρ),  ρ = λa;   E[T²] = (λ m E[Σδ²] + t0² + 2 t0 ρ m) / (1 - ρ²)

(whole prompts: pieces of mean a with the spread of X). An arrival lands in a step with probability ∝ its length, so
it waits out the length-biased residual R = E[T²] / (2m) (+ m under an overlap scheduler), then its own step, which
also carries the prompts that arrived during the same step: ρ_o E[T²] / m more on average, ρ_o = λ E[X] for whole
prompts (the step's saving is its own), λa for chunks. Its own step costs t0 + δ(B, S) (whole prompt), or, with a
budget of C, n(S) = ⌈S/C⌉ steps: n - 1 steps of the whole budget (tC each) and a last one of t0 + r(S) (tC - t0)/C for
the rest r(S) = S - (n - 1) C. A prompt longer than C holds the budget for its n - 1 whole steps, which the prompts
behind it wait for as in an M/G/1 queue of those steps (W_b: service (n(S) - 1) tC):

    TTFT(S) = R + ρ_o E[T²] / m + W_b + own step(s) + extras

Where B → 0 the own step is a prefill pass, t0(B) + δ(B, S) → X(S); a short prompt's step is never shorter than t0.
The chunked step's time is linear in its prompt tokens, as in `overload_schedule`. `mixed_step_ttft_terms` holds
these formulas; the token budget's own limit stays the chunked stability bound above (whole prompts: not modelled).

Percentiles use the exponential-tail approximation of the M/G/1 wait (exact for M/M/1): W = 0 with
probability 1 - ρ, else exponential with mean E[W]/ρ; so P(W > y) = ρ·exp(-yρ/E[W]). TTFT's tail is that
convolved with the prompt distribution, P(TTFT > t) = Σ_s p_s P(W > t - r - X(s)), and its quantiles are
found by bisection. In mixed steps the same shape is taken for the sharing and W_b together (mean their sum, R at its
mean): no wait with probability (1 - ρ_b) exp(-λ E[T²]/m), no other prompt in the step and no whole-budget step ahead.

Memory: weights + B · KV(S_p99 + O_p99) + the activation workspace of the largest pass + runtime reserve
must fit per GPU, in the engine's share of it (`Deployment.engine`, `parallelism.engine_memory_bytes`): the
`predict` formula at the 99th-percentile context. With an engine the workspace is that of its largest step (a
pass over its token budget) in both, so `Prediction.max_batch_size_fits` and this batch limit agree at the same
context; without one (engine=None) it is one pass here (one prompt, or one chunked step) and a whole static
batch there, so this limit is larger. The engine's running-sequence cap bounds both. Sequences still in
prefill are not counted.

Pipeline and expert parallelism (a replica of tp x pp x ep GPUs; pp = ep = 1 gives every formula above):

* Pipeline, pp stages (vLLM's pp "virtual engines"): the batch is split into pp micro-batches of
  max(B/pp, 1) sequences and every stage works on one micro-batch at a time, so all stages stay busy.
  t0, tC and X are **stage** times (1/pp of the layers, `engine.stage`) plus the hand-off of the
  micro-batch's activations to the next stage, h(n) = link latency + n · hidden · act bytes / tp / link
  bandwidth. A token of a sequence passes every stage once, so TPOT = pp · t̄ and Little's law reads
  B = λ E[O-1] pp t̄, hence λ(B) = B / (E[O-1] pp t0(B) + B a(B)). A stage is busy with one prompt
  for Xstage(S), the service time of the prefill queue; the prompt then still crosses the other
  pp - 1 stages: TTFT = r + W + Xstage(S) + (pp - 1)(Xstage(S) + h(S)) (chunked: + (pp - 1) tC).
  The worst inter-token gap is pp (t0 + max X_stage) (chunked: pp tC).
* Expert parallelism over ep GPUs (tp = 1): attention is data-parallel, each of the ep ranks holding
  B/ep sequences and their KV; the MoE layers all-to-all their tokens to E/ep experts per GPU
  (`ops.forward_ops` with ep). Every engine step is collective (the all-to-all joins all ranks), so
  prefill runs in **waves**: one prompt per rank in the same step, X(S) being the time of that wave
  (`forward_ops` with a batch of ep prompts, one per rank). Each rank queues its own prompts (arrivals
  assigned at random: λ/ep each, M/G/1 per rank, a conservative stand-in for a shared queue), and a
  request adds a = E[X]/ep of prefill time to the replica's steps, assuming the ranks' prefills share
  their steps. Chunked: each rank carries its own chunk of C tokens, a = E[S](tC - t0)/(ep C).
  Attention data parallelism over the tp GPUs (`Deployment.attention_dp`, the MLP/MoE tensor-parallel between an
  all-gather and the combine) is served the same way with r = tp ranks in place of ep (`Deployment.attention_ranks`).
* A replica wider than the device's NVLink domain goes through `parallelism.scale_out`: collectives of a
  tp or ep group wider than the domain, and every pipeline hand-off, run on the scale-out network
  profile (`Deployment.network`, default `network.DEFAULT_NETWORK`).

Not modelled: batching of several prompts into one prefill pass where prefill runs alone (each prompt, or each
wave of ep prompts, is its own pass: pessimistic at high load; mixed steps above take them together), preemption and swapping, KV re-reads of earlier
chunks by a chunk's attention, stage imbalance (embedding on the first stage, LM head on the last),
uneven expert routing within one GPU (across expert-parallel ranks the step waits for the busiest rank:
`ops.busiest_rank_load`, `Deployment.expert_routing_alpha`), and bursts beyond Poisson arrivals (except the synchronized waves of a closed loop
with fixed lengths, `wave`, at the end of this module). Speculative decoding, prefix caching,
offload and a fixed micro-batch count are refused (`check_serving_deployment`), not ignored.
"""

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    import pandas as pd

from . import fmt
from . import ops as O
from .bands import Band, bands_for
from .engine import decode_ceilings, stage, usd_per_million_tokens
from .engines import engine_tables
from .errors import SpecError, renamed
from .hardware import HardwareProfile
from .parallelism import (
    check,
    engine_limits,
    engine_memory_bytes,
    engine_step_tokens,
    engine_workspace_bytes,
    kv_allocated_tokens,
    kv_bytes_per_gpu,
    pipeline_hop_s,
    scale_out,
    weight_bytes_per_gpu,
)
from .registry import as_hardware, as_model
from .roofline import Ceilings, OpTable, stacked, time_ops
from .specs import MAX_CONTEXT, ModelSpec
from .workload import Deployment, ResolvedDeployment, Workload

_FROZEN = ConfigDict(frozen=True, extra="forbid")
_STD_NORMAL = NormalDist()
QUADRATURE_POINTS = 32  # equal-probability quantile midpoints for E[f(S)] of continuous distributions
MEMORY_PERCENTILE = 0.99  # the context whose KV every batch slot must hold
TTFT_PERCENTILES = (0.5, 0.9, 0.99)


# ------------------------------------------------------------ length distributions
class LengthDist(BaseModel):
    """A distribution of token counts (prompt or output lengths). Tokens are treated as a continuous quantity.

    kinds: `fixed` (tokens), `uniform` (integers low..high), `normal` (mean, std; clipped to [low, high]:
    values outside become the bound), `lognormal` (median, sigma of log), `empirical` (values with probs).
    `mean_tokens` and `mean_square_tokens` are exact (closed forms); `percentile` comes from the
    distribution; expectations of other functions use `support()`: exact for fixed, empirical and uniform
    over at most 64 values, otherwise 32 equal-probability quantile midpoints.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)  # every number finite
    kind: Literal["fixed", "uniform", "normal", "lognormal", "empirical"]
    tokens: float | None = Field(None, ge=1, le=MAX_CONTEXT, description="fixed: the length")
    low: float | None = Field(None, ge=1, le=MAX_CONTEXT, description="uniform: smallest length; normal: lower clip (default 1)")
    high: float | None = Field(None, ge=1, le=MAX_CONTEXT, description="uniform: largest length; normal: upper clip (default none)")
    mean: float | None = Field(None, ge=1, le=MAX_CONTEXT, description="normal: mean before clipping")
    std: float | None = Field(None, gt=0, le=MAX_CONTEXT, description="normal: standard deviation before clipping")
    median: float | None = Field(None, ge=1, le=MAX_CONTEXT, description="lognormal: median length = exp(mu)")
    sigma: float | None = Field(None, gt=0, le=5, description="lognormal: standard deviation of log(length)")
    values: tuple[float, ...] | None = Field(None, max_length=100_000, description="empirical: lengths")
    probs: tuple[float, ...] | None = Field(None, max_length=100_000, description="empirical: their probabilities (sum to 1)")

    @model_validator(mode="after")
    def _check(self) -> "LengthDist":
        need = {"fixed": ("tokens",), "uniform": ("low", "high"), "normal": ("mean", "std"),
                "lognormal": ("median", "sigma"), "empirical": ("values", "probs")}[self.kind]
        missing = [f for f in need if getattr(self, f) is None]
        if missing:
            raise ValueError(f"a {self.kind} distribution needs {', '.join(missing)}")
        if self.kind == "uniform" and self.high < self.low:
            raise ValueError(f"uniform high={self.high} is below low={self.low}")
        if self.kind == "normal" and self.high is not None and self.high < (self.low or 1):
            raise ValueError(f"normal clip high={self.high} is below low={self.low or 1}")
        if self.kind == "empirical":
            if not self.values or len(self.values) != len(self.probs):
                raise ValueError("empirical needs as many probs as values, at least one")
            if any(v < 1 for v in self.values) or any(p < 0 for p in self.probs):
                raise ValueError("empirical values must be >= 1 token and probs >= 0")
            if abs(sum(self.probs) - 1) > 1e-6:
                raise ValueError(f"empirical probs sum to {sum(self.probs):.6g}, not 1")
        return self

    # constructors
    @classmethod
    def fixed(cls, tokens: float) -> "LengthDist":
        return cls(kind="fixed", tokens=tokens)

    @classmethod
    def uniform(cls, low: int, high: int) -> "LengthDist":
        return cls(kind="uniform", low=low, high=high)

    @classmethod
    def normal(cls, mean: float, std: float, low: float = 1, high: float | None = None) -> "LengthDist":
        return cls(kind="normal", mean=mean, std=std, low=low, high=high)

    @classmethod
    def lognormal(cls, median: float, sigma: float) -> "LengthDist":
        return cls(kind="lognormal", median=median, sigma=sigma)

    @classmethod
    def empirical(cls, pairs) -> "LengthDist":
        """From (tokens, probability) pairs."""
        pairs = list(pairs)
        return cls(kind="empirical", values=tuple(float(t) for t, _ in pairs), probs=tuple(float(p) for _, p in pairs))

    # moments
    def _clip(self) -> tuple[float, float]:
        return (self.low if self.low is not None else 1.0), (self.high if self.high is not None else math.inf)

    def _normal_parts(self):
        lo, hi = self._clip()
        a, b = (lo - self.mean) / self.std, (hi - self.mean) / self.std
        Fa, Fb = _STD_NORMAL.cdf(a), (1.0 if hi == math.inf else _STD_NORMAL.cdf(b))
        fa, fb = _STD_NORMAL.pdf(a), (0.0 if hi == math.inf else _STD_NORMAL.pdf(b))
        return lo, hi, a, b, Fa, Fb, fa, fb

    @property
    def mean_tokens(self) -> float:
        """E[L], exact. Clipped normal: lo·Φ(α) + hi·(1-Φ(β)) + μ(Φ(β)-Φ(α)) + σ(φ(α)-φ(β))."""
        k = self.kind
        if k == "fixed":
            return float(self.tokens)
        if k == "uniform":
            return (self.low + self.high) / 2
        if k == "lognormal":
            return self.median * math.exp(self.sigma**2 / 2)
        if k == "empirical":
            return float(np.dot(self.values, self.probs))
        lo, hi, a, b, Fa, Fb, fa, fb = self._normal_parts()
        upper = 0.0 if hi == math.inf else hi * (1 - Fb)
        return lo * Fa + upper + self.mean * (Fb - Fa) + self.std * (fa - fb)

    @property
    def mean_square_tokens(self) -> float:
        """E[L²], exact. Uniform integers: mean² + ((n² - 1)/12) with n = high - low + 1; lognormal: m²·e^{2σ²}."""
        k = self.kind
        if k == "fixed":
            return float(self.tokens) ** 2
        if k == "uniform":
            n = self.high - self.low + 1
            return self.mean_tokens**2 + (n * n - 1) / 12
        if k == "lognormal":
            return self.median**2 * math.exp(2 * self.sigma**2)
        if k == "empirical":
            return float(np.dot(np.square(self.values), self.probs))
        lo, hi, a, b, Fa, Fb, fa, fb = self._normal_parts()
        mu, s = self.mean, self.std
        bfb = 0.0 if hi == math.inf else b * fb
        inner = mu * mu * (Fb - Fa) + 2 * mu * s * (fa - fb) + s * s * ((Fb - Fa) + a * fa - bfb)
        upper = 0.0 if hi == math.inf else hi * hi * (1 - Fb)
        return lo * lo * Fa + upper + inner

    def percentile(self, q: float) -> float:
        """The q-quantile (0 < q < 1) of the length."""
        if not 0 < q < 1:
            raise SpecError("percentile", f"must be in (0, 1), got {q}")
        k = self.kind
        if k == "fixed":
            return float(self.tokens)
        if k == "uniform":
            return float(min(self.high, self.low + math.floor(q * (self.high - self.low + 1))))
        if k == "lognormal":
            return self.median * math.exp(self.sigma * _STD_NORMAL.inv_cdf(q))
        if k == "empirical":
            order = np.argsort(self.values)
            cdf = np.cumsum(np.asarray(self.probs)[order])
            return float(np.asarray(self.values)[order][min(int(np.searchsorted(cdf, q - 1e-12)), len(cdf) - 1)])
        lo, hi = self._clip()
        return float(min(max(self.mean + self.std * _STD_NORMAL.inv_cdf(q), lo), hi))

    def support(self) -> tuple[np.ndarray, np.ndarray]:
        """(lengths, probabilities) over which E[f(L)] is taken (see the class docstring)."""
        k = self.kind
        if k == "fixed":
            return np.array([float(self.tokens)]), np.array([1.0])
        if k == "empirical":
            return np.asarray(self.values, float), np.asarray(self.probs, float)
        if k == "uniform" and self.high - self.low + 1 <= 64:
            v = np.arange(self.low, self.high + 1, dtype=float)
            return v, np.full(len(v), 1 / len(v))
        qs = (np.arange(QUADRATURE_POINTS) + 0.5) / QUADRATURE_POINTS
        return np.array([self.percentile(q) for q in qs]), np.full(QUADRATURE_POINTS, 1 / QUADRATURE_POINTS)

    def describe(self) -> str:
        k = self.kind
        return {"fixed": lambda: f"{self.tokens:g}", "uniform": lambda: f"uniform {self.low:g}..{self.high:g}",
                "normal": lambda: f"normal {self.mean:g}±{self.std:g}", "lognormal": lambda: f"lognormal median {self.median:g} σ {self.sigma:g}",
                "empirical": lambda: "empirical " + ",".join(f"{v:g}={p:g}" for v, p in zip(self.values, self.probs))}[k]()


LENGTH_SYNTAX = ("N | fixed:N | uniform:LOW:HIGH | normal:MEAN:STD | lognormal:MEDIAN:SIGMA | "
                 "empirical:T1=P1,T2=P2,... (probabilities sum to 1)")


def as_length_dist(value, field: str) -> LengthDist:
    """An int (fixed), a LengthDist, a string in `LENGTH_SYNTAX`, or (tokens, probability) pairs; else SpecError(field)."""
    if isinstance(value, LengthDist):
        return value
    try:
        if isinstance(value, bool):
            raise ValueError("expected a token count, not a boolean")
        if isinstance(value, (int, float, np.integer, np.floating)):
            return LengthDist.fixed(float(value))
        if isinstance(value, str):
            return _parse_length(value.strip())
        if isinstance(value, (list, tuple)):
            return LengthDist.empirical(value)
    except SpecError:
        raise
    except (ValueError, TypeError) as exc:
        msg = exc.errors()[0]["msg"].removeprefix("Value error, ") if hasattr(exc, "errors") else str(exc)
        raise SpecError(field, f"{msg} (got {value!r}; syntax: {LENGTH_SYNTAX})") from None
    raise SpecError(field, f"expected a token count or a distribution, got {type(value).__name__}; syntax: {LENGTH_SYNTAX}")


def _parse_length(text: str) -> LengthDist:
    kind, _, rest = text.partition(":")
    if not rest:
        return LengthDist.fixed(float(kind))
    if kind == "empirical":
        pairs = [p.split("=") for p in rest.split(",") if p.strip()]
        if not pairs or any(len(p) != 2 for p in pairs):
            raise ValueError("empirical needs TOKENS=PROB pairs")
        return LengthDist.empirical((float(t), float(p)) for t, p in pairs)
    args = [float(x) for x in rest.split(":")]
    makers = {"fixed": (1, LengthDist.fixed), "uniform": (2, LengthDist.uniform), "normal": (2, LengthDist.normal),
              "lognormal": (2, LengthDist.lognormal)}
    if kind not in makers:
        raise ValueError(f"unknown distribution {kind!r}")
    n, make = makers[kind]
    if len(args) != n:
        raise ValueError(f"{kind} takes {n} number(s)")
    return make(*args)


@dataclass(frozen=True)
class Traffic:
    """What arrives: Poisson requests at `requests_per_s` (None where no rate is fixed, as on a frontier), or a
    closed loop of `concurrency` clients, each sending its next request when the last one finished (how
    `vllm bench serve --max-concurrency`, genai-perf and AIPerf load a server; `closed_loop`); each request a
    prompt and an output whose lengths follow `LengthDist`s. `Traffic.of` also takes a length as an int or a
    string like "lognormal:2048:0.5". `synchronized`: the closed loop's clients start together and the lengths
    are fixed, so requests arrive in waves of `concurrency` (`wave`), not as a Poisson stream. Requests/s,
    clients, tokens."""

    prompt_tokens: LengthDist
    output_tokens: LengthDist
    requests_per_s: float | None = None
    concurrency: float | None = None
    synchronized: bool = False

    def __post_init__(self):
        _check_rate(self.requests_per_s)
        check_concurrency(self.concurrency)
        if self.requests_per_s is not None and self.concurrency is not None:
            raise SpecError("concurrency", "give a rate (requests_per_s) or a concurrency, not both: a closed loop's rate is what it answers")
        for name in ("prompt_tokens", "output_tokens"):
            if not isinstance(getattr(self, name), LengthDist):
                raise SpecError(name, f"must be a LengthDist (Traffic.of also takes an int or a string like 'lognormal:2048:0.5'), "
                                      f"got {type(getattr(self, name)).__name__}")
        o = self.output_tokens
        if o.mean_tokens <= 1:
            raise SpecError("output_tokens", f"mean {o.mean_tokens:g} leaves no decode steps; continuous batching needs more than 1 output token on average")
        if not isinstance(self.synchronized, bool):
            raise SpecError("synchronized", f"must be True or False, got {self.synchronized!r}")
        if self.synchronized:
            if self.concurrency is None:
                raise SpecError("synchronized", "waves come from a closed loop: give a concurrency, or leave synchronized unset")
            loose = [n for n in ("prompt_tokens", "output_tokens") if getattr(self, n).kind != "fixed"]
            if loose:
                raise SpecError("synchronized", f"waves need fixed lengths ({', '.join(loose)} is not fixed): requests of "
                                                "different lengths finish apart; leave synchronized unset")

    @classmethod
    def of(cls, requests_per_s, prompt_tokens, output_tokens, concurrency=None, synchronized: bool = False) -> "Traffic":
        _check_rate(requests_per_s)
        check_concurrency(concurrency)
        return cls(as_length_dist(prompt_tokens, "prompt_tokens"), as_length_dist(output_tokens, "output_tokens"), requests_per_s,
                   concurrency, synchronized)

    @property
    def memory_context_tokens(self) -> float:
        """The context every batch slot must hold: the 99th-percentile prompt plus the 99th-percentile output (`MEMORY_PERCENTILE`)."""
        return self.prompt_tokens.percentile(MEMORY_PERCENTILE) + self.output_tokens.percentile(MEMORY_PERCENTILE)

    def memory_workload(self) -> Workload:
        """The workload `parallelism.check` validates a serving deployment against: the mean prompt and the
        memory context (`memory_context_tokens`)."""
        p = self.prompt_tokens.mean_tokens
        return Workload(prompt_tokens=max(1, round(p)), output_tokens=max(1, round(self.memory_context_tokens - p)))



def check_concurrency(concurrency) -> None:
    """None, or a positive finite number of clients (not a bool)."""
    n = concurrency
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, float, np.integer, np.floating))
                          or not math.isfinite(n) or n <= 0):
        raise SpecError("concurrency", f"must be a positive number of clients, got {n!r}")


def _check_rate(requests_per_s) -> None:
    r = requests_per_s
    if r is not None and not (isinstance(r, (int, float)) and math.isfinite(r) and r > 0):
        raise SpecError("requests_per_s", f"must be a positive number, got {r!r}")


# ------------------------------------------------------------ queueing (the formulas, in one place)
def mg1_wait_mean_s(lam, ex_s, ex2_s):
    """Pollaczek-Khinchine: E[W] = λ E[X²] / (2(1 - ρ)), ρ = λ E[X]. M/D/1 (X fixed = 1/μ): ρ / (2μ(1 - ρ))."""
    lam, ex_s, ex2_s = (np.asarray(v, float) for v in (lam, ex_s, ex2_s))
    rho = lam * ex_s
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(rho < 1, lam * ex2_s / (2 * (1 - rho)), np.inf)


def mixed_step_ttft_terms(lam, t0_s, a_s, piece_square_mean_s2, others_piece_s, block_mean_s, block_square_mean_s2,
                          lookahead_steps=0.0):
    """The queueing terms of TTFT in a step loop that carries prompts beside the decode batch (module docstring,
    "Mixed steps"): (residual R, sharing, wait behind whole-budget steps, P(wait > 0)). Steps T = t0 + the pieces of
    the prompts that arrived during the step before (a Poisson count λT, each piece δ; E[δ] per request a, so
    ρ = λa): m = E[T] = t0 / (1 - ρ) and, from T_n = t0 + Σ δ over Poisson(λ T_{n-1}),
    E[T²] = (λ m E[Σδ²] + t0² + 2 t0 ρ m) / (1 - ρ²). An arrival lands in a step with probability ∝ its length,
    so it waits out R = E[T²] / (2m) (+ one mean step m per `lookahead_steps`), and its step also carries the others
    that arrived during that step, ρ E[T²] / m on average. Prompts longer than the budget hold it for their
    n(S) - 1 whole steps: prompts behind them wait as in an M/G/1 queue of those steps (`mg1_wait_mean_s`).
    P(wait > 0) = 1 - (1 - ρ_b) exp(-λ E[T²]/m): some other prompt shares the step, or a whole-budget step is ahead."""
    lam, t0_s, a_s = (np.asarray(v, float) for v in (lam, t0_s, a_s))
    rho = lam * a_s
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        m = np.where(rho < 1, t0_s / (1 - rho), np.inf)
        et2 = np.where(rho < 1, (lam * m * piece_square_mean_s2 + t0_s**2 + 2 * t0_s * rho * m) / (1 - rho**2), np.inf)
        biased = et2 / m  # E[T²]/E[T]: the mean length of the step an arrival lands in
        residual = biased / 2 + lookahead_steps * m
        others = lam * np.asarray(others_piece_s, float) * biased
        wait_block = mg1_wait_mean_s(lam, block_mean_s, block_square_mean_s2)
        rho_b = lam * np.asarray(block_mean_s, float)
        p_wait = np.clip(1 - (1 - rho_b) * np.exp(-lam * biased), 0.0, 1.0)
    return residual, others, wait_block, p_wait


def wait_tail_probability(y, rho, wait_mean_s):
    """P(W > y) ≈ ρ·exp(-y ρ / E[W]) for y ≥ 0 (1 for y < 0): an atom at 0 of mass 1 - ρ and an exponential tail
    with mean E[W]/ρ. Exact for M/M/1; the standard heavy-traffic shape for M/G/1."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        tail = np.where(wait_mean_s > 0, rho * np.exp(-np.maximum(y, 0) * rho / np.where(wait_mean_s > 0, wait_mean_s, 1)), 0.0)
    return np.where(y < 0, 1.0, np.where(rho >= 1, 1.0, tail))


def ttft_tail_probability(t, fixed_s, service_s, extra_s, probs, rho, wait_mean_s):
    """P(TTFT > t) with TTFT = fixed + W + X(S) + extra(S): Σ_s p_s P(W > t - fixed - X(s) - extra(s)).
    `service_s`, `extra_s`, `probs` carry the support on their last axis; the rest broadcast."""
    y = t[..., None] - fixed_s[..., None] - service_s - extra_s
    return (probs * wait_tail_probability(y, rho[..., None], wait_mean_s[..., None])).sum(axis=-1)


def ttft_percentile_s(q, fixed_s, service_s, extra_s, probs, rho, wait_mean_s, iterations: int = 48):
    """The q-quantile of TTFT, by bisection on `ttft_tail_probability` between the no-wait minimum and the
    bound max(X + extra) + W_q, where W_q = (E[W]/ρ)·ln(ρ/(1-q)) is the wait's own q-quantile."""
    rho, wm, fixed_s = np.broadcast_arrays(np.asarray(rho, float), np.asarray(wait_mean_s, float), np.asarray(fixed_s, float))
    total = service_s + extra_s
    with np.errstate(divide="ignore", invalid="ignore"):
        wq = np.where((rho > 1 - q) & (rho > 0), wm / np.where(rho > 0, rho, 1) * np.log(rho / (1 - q)), 0.0)
    lo = fixed_s + total.min(axis=-1)
    hi = fixed_s + total.max(axis=-1) + wq
    lo, hi = np.array(np.broadcast_to(lo, hi.shape)), np.array(hi)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        over = ttft_tail_probability(mid, fixed_s, service_s, extra_s, probs, rho, wm) > 1 - q
        lo, hi = np.where(over, mid, lo), np.where(over, hi, mid)
    return np.where(rho < 1, hi, np.inf)


def finite_run_duration_s(requests, requests_per_s, e2e_s):
    """The wall time of a benchmark run of `requests` Poisson arrivals at `requests_per_s`, from the first send to the
    last completion: the last request is sent after requests - 1 exponential gaps, (requests - 1)/λ on average, and
    completes its end-to-end latency later. A serving benchmark's throughput is its tokens over this duration
    (vLLM benchmarks/benchmark_serving.py and SGLang bench_serving: output_throughput = total output tokens / dur_s,
    the gaps drawn by np.random.exponential(1 / request_rate)), not λ·E[O]. Worked number: 500 requests at 16/s
    with a 17 s response take 499/16 + 17 = 48.2 s, 10.4 requests/s achieved."""
    return (np.asarray(requests, float) - 1) / np.asarray(requests_per_s, float) + np.asarray(e2e_s, float)


# ------------------------------------------------------------ step times from the operator table
def _timed(ops: list, ceil: Ceilings, tp, pp: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(attention time, all other ops' time, per-layer activation footprint) of one pass on one GPU of one
    of `pp` balanced pipeline stages (`engine.stage`), summed over ops."""
    t = OpTable.of(ops)
    act = t.layer_activation_bytes()  # per layer: before staging
    t = stage(t, pp)
    per_op = time_ops(t, ceil, tp).time_s
    attn = t.column(t.kinds == O.OpKind.ATTENTION.value)
    return np.where(attn, per_op, 0).sum(axis=0), np.where(attn, 0, per_op).sum(axis=0), act


def batch_grid(upper: float) -> np.ndarray:
    """Decode batch sizes the curves are evaluated at: every integer to 32, then steps of 6% up to `upper`."""
    upper = max(2.0, float(upper))
    geo = np.unique(np.round(32 * 1.06 ** np.arange(1, 1 + int(math.ceil(math.log(max(upper / 32, 1.0001)) / math.log(1.06))))))
    return np.unique(np.concatenate([np.arange(1, 33, dtype=float), geo[geo <= upper * 1.06]]))


SERVING_UNSUPPORTED = {
    "speculative": "speculative decoding",
    "pp_microbatches": "a fixed micro-batch count (a serving pipeline runs pp virtual engines)",
    "prefix_tokens": "prefix caching",
    "kv_offload_fraction": "KV offload",
    "weight_offload_fraction": "weight offload",
}


def check_serving_deployment(dep: Deployment) -> None:
    """The deployment fields the continuous-batching model does not cover are refused, not ignored."""
    for field, what in SERVING_UNSUPPORTED.items():
        value = getattr(dep, field)
        if value not in (None, 0, 0.0):
            raise SpecError(field, f"{what} is not modelled under continuous batching (steady_state, frontier, plan); "
                                   f"leave it unset here and compare it with `predict` / `compare`")


def replica_memory_bytes(model: ModelSpec, rd: ResolvedDeployment, tp: int, context_tokens: float) -> tuple[float, float]:
    """(weight bytes, KV bytes of one sequence at `context_tokens`) per GPU of a replica of tp x pp x ep GPUs:
    a stage holds 1/pp of the layers; with ep the experts are spread and each data-parallel attention
    rank holds the KV of its own sequences, 1/ep of the batch (as in `predict`). KV slots follow the
    deployment's allocation (`predict.kv_allocated_tokens`)."""
    slots = float(kv_allocated_tokens(rd.dep, context_tokens, model.max_context))
    return float(weight_bytes_per_gpu(model, rd, tp)), float(kv_bytes_per_gpu(model, rd, tp, slots))


def replica_ceilings(hws: list[HardwareProfile], rd: ResolvedDeployment) -> tuple[Ceilings, np.ndarray, np.ndarray]:
    """Per device: ceilings stacked as (H, 1) arrays and the pipeline hop link (bytes/s, latency s) as (H, 1).
    A replica wider than a device's NVLink domain goes through `parallelism.scale_out`: tp or ep
    collectives wider than the domain, and every pipeline hop, run on the scale-out network."""
    per_hw, bw, lat = [], [], []
    for h in hws:
        real = Ceilings.of(h, rd.compute_key)
        real, _, hop, _ = scale_out(h, rd.dep, real, real)
        per_hw.append(real)
        bw.append(hop[0] if hop else real.link_bytes_per_s)
        lat.append(hop[1] if hop else real.link_latency_s)
    return stacked(per_hw, (slice(None), None)), np.array(bw, float)[:, None], np.array(lat, float)[:, None]


@dataclass(frozen=True)
class ServingState:
    """Every figure of a replica at one request rate per device row (`Curves.state`): arrays of shape (R,),
    or (R, Q) over the prompt-length support. Seconds, requests/s, bytes; the symbols of the module docstring."""

    requests_per_s: np.ndarray  # λ per replica
    batch_size: np.ndarray  # B = λ E[O-1] TPOT (Little's law)
    t0_s: np.ndarray  # decode-only stage step at B
    tc_s: np.ndarray  # stage step carrying a prefill chunk (NaN without chunking)
    tpot_s: np.ndarray  # pp · mean stage step
    itl_max_s: np.ndarray  # worst gap between two tokens
    service_s: np.ndarray  # (R, Q) prefill service time X(S) per prompt length (mixed steps: the prompt's own step or steps)
    service_mean_s: np.ndarray  # E[X]
    extra_s: np.ndarray  # (R, Q) time after the prefill server (later stages, hand-offs, KV transfer)
    utilization: np.ndarray  # ρ of the prefill server (whole prompts in mixed steps: λa)
    wait_mean_s: np.ndarray  # mean M/G/1 wait (mixed steps: the prompts sharing the step, and W_b)
    residual_s: np.ndarray  # mean residual of the running step an arrival waits out (mixed steps: length-biased)
    ttft_mean_s: np.ndarray
    stable: np.ndarray  # below capacity and ρ < 1
    memory_required_bytes_per_gpu: np.ndarray  # per GPU
    rows: np.ndarray  # the device rows of `Curves` these figures are for
    wait_probability: np.ndarray  # P(W > 0): ρ of the M/G/1 prefill server, or in a mixed step loop that of sharing or waiting


class Curves:
    """The steady-state curves of one (model, formats, tp x pp x ep) replica on H devices over a batch grid of K points.

    Arrays are (H, K) or (H, K, Q) with Q the prompt support. `state(lam)` evaluates every figure at a
    request rate per replica, one rate per device row. Step times are those of one pipeline stage
    (`pp` = 1: the whole pass); `t0`, `tc` and `x_pre` are per stage, TPOT is `pp` of them (module
    docstring, "Pipeline and expert parallelism").
    """

    def __init__(self, model: ModelSpec, rd: ResolvedDeployment, tp: int, hws: list[HardwareProfile],
                 traffic: "Traffic", chunk_tokens: int | None, grid: np.ndarray,
                 max_batch_size: int | None = None, decode_only: bool = False, prefill_only: bool = False):
        dep = rd.dep
        prompt, output = traffic.prompt_tokens, traffic.output_tokens
        check_serving_deployment(dep)
        pp, ep = dep.pp, dep.ep
        ranks = dep.attention_ranks  # data-parallel attention ranks: ep, or tp under attention_dp, else 1
        eng, lim = rd.engine, engine_limits(rd, hws)
        n = len(hws)
        cap = np.full(n, np.inf) if max_batch_size is None else np.full(n, float(max_batch_size))
        if lim is not None:  # the engine's running-sequence cap, and its token budget as the chunk when it chunks
            cap = np.minimum(cap, lim[0])
            if chunk_tokens is None and eng.chunked_prefill and eng.mixed_prefill_decode:  # else prefill steps run alone
                chunk_tokens = lim[1]
        self.hws, self.tp, self.pp, self.ep = hws, tp, pp, ep
        self.step_tokens = None if lim is None else np.asarray(lim[1], float)  # (H,) the engine's tokens per step
        self.chunk = None if chunk_tokens is None else np.broadcast_to(np.asarray(chunk_tokens, float), (n,)).copy()  # (H,)
        self.gpus = tp * pp * ep
        self.ranks = ranks
        self.servers = ranks  # data-parallel attention ranks, each prefilling its own prompts
        ceil, hop_bw, hop_lat = replica_ceilings(hws, rd)
        def hop(tokens):  # a stage's hand-off of `tokens` tokens to the next
            return pipeline_hop_s(model, rd, tp, tokens, hop_bw, hop_lat) if pp > 1 else 0.0

        s_val, s_p = prompt.support()
        self.s_val, self.s_p = s_val, s_p
        self.es, self.eo1 = prompt.mean_tokens, output.mean_tokens - 1
        self.context_s = self.es + (output.mean_square_tokens - output.mean_tokens) / (2 * self.eo1)
        b = grid[None, :]
        self.grid = grid
        # a pipeline splits the batch into pp micro-batches (virtual engines); fewer than pp sequences leave slots idle
        b_mb = np.maximum(b / pp, 1.0) if pp > 1 else b
        per_rank = b_mb / ranks
        # decode stage step of one micro-batch at the mean context, plus its hand-off to the next stage
        dec_ops = O.forward_ops(model, rd, b_mb, 1, self.context_s - 1, tp, mla_absorbed=True, ep=ep)
        dec_attn, dec_lin, dec_act = _timed(dec_ops, decode_ceilings(ceil), tp, pp)  # replayed from a CUDA graph, as `predict`'s decode
        if eng is not None and np.any(b_mb > eng.cuda_graph_max_batch):  # past the engine's captured batches: eager launches
            eager_attn, eager_lin, _ = _timed(dec_ops, ceil, tp, pp)
            beyond = b_mb > eng.cuda_graph_max_batch
            dec_attn, dec_lin = np.where(beyond, eager_attn, dec_attn), np.where(beyond, eager_lin, dec_lin)
        step_h = (lambda seqs: eng.step_s(seqs)) if eng is not None else (lambda seqs: 0.0)  # the engine's CPU time per step
        self.lookahead_steps = 1.0 if eng is not None and eng.overlap_scheduler else 0.0
        self.t0 = dec_attn + dec_lin + hop(per_rank) + step_h(b_mb)
        # one prefill pass per prompt length on the support: one prompt per attention rank (ranks prompts in a wave)
        pre_attn, pre_lin, pre_act = _timed(O.forward_ops(model, rd, ranks, s_val[None, :], 0, tp, mla_absorbed=False, ep=ep), ceil, tp, pp)
        self.x_pre = pre_attn + pre_lin + step_h(ranks)  # (H, Q): the time a stage is busy with one prompt
        # the other pp - 1 stages and hand-offs a prompt still passes through before its first token
        # and the engine's latency outside its steps (API, tokenizing the prompt), per prompt length
        self.request_s = np.zeros_like(s_val, dtype=float) if eng is None else eng.request_s(np.asarray(s_val, float))
        self.pre_extra = np.broadcast_to((pp - 1) * (self.x_pre + hop(s_val[None, :])) + self.request_s[None, :], self.x_pre.shape)
        attn_per_prompt_token = (pre_attn * s_p).sum(axis=-1) / self.es  # (H,)
        # a step loop that carries prompts beside the decode batch (module docstring, "Mixed steps"): chunked prefill,
        # or an engine that runs a whole prompt in the decode step (`EngineProfile.mixed_prefill_decode`)
        self.mixed = not decode_only and not prefill_only and dep.is_tp_replica and (
            self.chunk is not None or (eng is not None and eng.mixed_prefill_decode))
        self.delta = None
        if self.mixed and self.chunk is None:
            # δ(B, S): what a whole prompt of S tokens adds to a step of B decode tokens: the GEMMs, norms and all-reduces
            # over B + S tokens less those over B (the weights read once), the prompt's attention, its CPU time
            k_pts, q_pts = b_mb.shape[1], len(s_val)
            bq = np.repeat(b_mb, q_pts, axis=1)  # (1, K·Q): every batch with every prompt length
            sq = np.tile(s_val, k_pts)[None, :]
            _, mixq_lin, _ = _timed(O.forward_ops(model, rd, bq, (bq + sq) / bq, 0, tp, mla_absorbed=True, ep=ep), ceil, tp, pp)
            self.delta = (mixq_lin.reshape(n, k_pts, q_pts) - dec_lin[..., None] + pre_attn[:, None, :]
                          + (step_h(b_mb + 1) - step_h(b_mb))[..., None])  # (H, K, Q)
            # the weights read once are saved once per step that carries prompts, X(S) - δ(B, S), in the fraction
            # q(B) = 1 - exp(-B / E[O-1]) of steps that carry any (λ·t̄ = B / E[O-1] prompts arrive per step): per request
            # a(B) = E[X] - E[X - δ] q(B) E[O-1] / B
            mean_x = (self.x_pre * s_p).sum(axis=-1)[:, None]
            saved = ((self.x_pre[:, None, :] - self.delta) * s_p).sum(axis=-1)
            per_step = self.eo1 / b_mb
            self.a_mixed = mean_x - saved * (1 - np.exp(-1 / per_step)) * per_step  # (H, K)
        workspace = dec_act
        if self.chunk is not None and not decode_only:
            c = self.chunk[:, None]
            _, mix_lin, mix_act = _timed(O.forward_ops(model, rd, b_mb, (b_mb + ranks * c) / b_mb, 0, tp, mla_absorbed=True, ep=ep), ceil, tp, pp)
            self.tc = mix_lin + dec_attn + c * attn_per_prompt_token[:, None] + hop(per_rank + c) + step_h(b_mb + 1)
            workspace = np.maximum(workspace, mix_act)
        else:
            self.tc = np.full_like(self.t0, np.nan)
            if not decode_only:
                workspace = np.maximum(workspace, pre_act.max())
        # memory per GPU at each batch
        if lim is not None:  # an engine keeps the workspace of its largest step (its token budget, or a whole prompt)
            step_tokens = engine_step_tokens(lim[1], float(np.max(s_val)), self.chunk is not None)
            # and its sequence-slot buffers: one per running sequence it is set up for (the cap), each as long as a request
            ws = engine_workspace_bytes(model, rd, tp, step_tokens, cap, traffic.memory_context_tokens, ep)
            workspace = np.broadcast_to(ws[:, None], self.t0.shape)
        self.context_mem = traffic.memory_context_tokens
        self.weight_bytes, self.kv_bytes_per_sequence = replica_memory_bytes(model, rd, tp, self.context_mem)
        self.kv_bytes_per_slot = float(kv_bytes_per_gpu(model, rd, tp, 1.0))
        self.reserve_bytes = dep.runtime_reserve_bytes
        self.memory_available = engine_memory_bytes(rd, np.array([h.memory_bytes for h in hws], float)[:, None],
                                                    self.weight_bytes + workspace + self.reserve_bytes)
        self.memory_required = self.weight_bytes + b * self.kv_bytes_per_sequence + workspace + self.reserve_bytes
        self.memory_required = np.broadcast_to(self.memory_required, self.t0.shape)
        self.workspace = np.broadcast_to(workspace, self.t0.shape)
        self.decode_only = decode_only
        self.rd = rd
        self.notes = list(rd.notes)  # fallbacks and running past max_context, as `parallelism.check` recorded them
        ok = self.memory_required <= self.memory_available
        self.cap = cap
        ok &= b <= cap[:, None]
        # the request rate each batch sustains, and where the curve stops
        a = self._a(self.t0, self.tc)
        self.lam = b / (self.eo1 * pp * self.t0 + b * a)
        if self.chunk is not None and not decode_only:
            ok &= self.lam / ranks * self.es * self.tc / self.chunk[:, None] < 1
        ok = np.logical_and.accumulate(ok, axis=1)  # beyond the first infeasible batch, none is reachable
        self.fits = ok[:, 0]
        lam = np.where(ok, self.lam, -np.inf)
        self.lam_env = np.maximum.accumulate(lam, axis=1)  # the rising part of λ(B): a rate's batch is the smallest
        self.capacity = np.where(self.fits, self.lam_env.max(axis=1), 0.0)
        self.ok = ok

    def subset(self, rows) -> "Curves":
        """The same curves for the device rows `rows` only (a shallow copy with every per-device array sliced)."""
        rows = np.asarray(rows)
        out = object.__new__(Curves)
        n = len(self.hws)
        for k, v in vars(self).items():
            if isinstance(v, np.ndarray) and v.ndim >= 1 and v.shape[0] == n and k not in ("grid", "s_val", "s_p"):
                v = v[rows]
            elif isinstance(v, list) and len(v) == n:
                v = [v[i] for i in rows]
            setattr(out, k, v)
        return out

    def _a(self, t0, tc, rows=slice(None), a_mixed=None):
        """Stage time a request's prefill adds, per request of the replica: E[X(S)]/ep whole-prompt, E[S](tC - t0)/(ep·C)
        chunked, E[X] less the weights a step carrying prompts reads once for whole prompts in the decode step
        (`a_mixed`, module docstring "Mixed steps": (R,) at a state; the grid's own by default), 0 for a decode-only
        pool. t0, tc: (R, K) over the grid or (R,) at a state, for device rows `rows`."""
        if self.decode_only:
            return np.zeros_like(t0)
        if self.delta is not None:
            return self.a_mixed[rows] if a_mixed is None else a_mixed
        if self.chunk is None:
            mean_x = (self.x_pre[rows] * self.s_p).sum(axis=-1) / self.servers
            return np.broadcast_to(mean_x[:, None] if t0.ndim == 2 else mean_x, t0.shape)
        chunk = self.chunk[rows]
        return self.es * (tc - t0) / (self.servers * (chunk[:, None] if t0.ndim == 2 else chunk))

    def state(self, lam, rows=None) -> "ServingState":
        """Every figure at request rate `lam` per replica (one per row; rows selects device rows)."""
        rows = np.arange(len(self.hws)) if rows is None else np.asarray(rows)
        lam = np.asarray(lam, float)
        env, t0g, tcg = self.lam_env[rows], self.t0[rows], self.tc[rows]
        # interpolate the step times along the curve; below the first grid batch, hold its step time
        k = np.clip((env <= lam[:, None]).sum(axis=1) - 1, -1, env.shape[1] - 1)
        kk = np.clip(k, 0, env.shape[1] - 2)
        l0 = np.where(k < 0, 0.0, env[np.arange(len(rows)), kk])
        l1 = env[np.arange(len(rows)), np.where(k < 0, 0, kk + 1)]
        with np.errstate(invalid="ignore"):
            w = np.clip(np.where(l1 > l0, (lam - l0) / np.where(l1 > l0, l1 - l0, 1), 0.0), 0, 1)
        w = np.nan_to_num(w)
        # the lower end is the first batch of a flat run of the envelope: a batch past a step of the sawtooth
        # (tile rounding: λ(B) falls as B crosses a tile boundary) or past the memory limit repeats the
        # envelope's value, and the rate is served by the smaller batch before the step, never by one after it
        first_of_run = (env < l0[:, None]).sum(axis=1)
        i0 = np.where(k < 0, 0, np.minimum(kk, first_of_run))
        i1 = np.where(k < 0, 0, kk + 1)
        r = np.arange(len(rows))
        pick = lambda g: g[r, i0] + w * (g[r, i1] - g[r, i0])  # noqa: E731
        t0, tc = pick(t0g), pick(tcg)
        delta = a_mixed = None
        if self.delta is not None:  # δ(B, S) at the state's batch, per prompt length, and a(B)
            dg = self.delta[rows]
            delta = dg[r, i0] + w[:, None] * (dg[r, i1] - dg[r, i0])
            a_mixed = pick(self.a_mixed[rows])
        a = self._a(t0, tc, rows, a_mixed)
        with np.errstate(divide="ignore", invalid="ignore"):
            tbar = np.where(lam * a < 1, t0 / (1 - lam * a), np.inf)  # mean stage step
        tpot = self.pp * tbar
        batch = lam * self.eo1 * tpot
        if self.chunk is None:
            service = np.broadcast_to(self.x_pre[rows], (len(rows), len(self.s_val)))
            extra = self.pre_extra[rows]
            itl_max = self.pp * (t0 + self.x_pre[rows].max(axis=-1))
        else:
            service = self.s_val[None, :] / self.chunk[rows][:, None] * tc[:, None]
            extra = ((self.pp - 1) * tc)[:, None] + self.request_s[None, :] + np.zeros_like(service)
            itl_max = self.pp * tc
        if self.decode_only:
            itl_max = self.pp * t0
            extra = np.zeros_like(service)
        ex = (service * self.s_p).sum(axis=-1)
        ex2 = (service**2 * self.s_p).sum(axis=-1)
        residual = tbar * (0.5 + self.lookahead_steps)  # the step in progress, and the one an overlap scheduler already queued
        lam_rank = lam / self.servers  # each attention rank queues its own share of the prompts
        rho = lam_rank * ex
        wait = mg1_wait_mean_s(lam_rank, ex, ex2)
        wait_probability = rho
        if self.mixed:  # the step loop (module docstring, "Mixed steps"); pp = ep = 1 here
            if delta is not None:  # whole prompts: one piece δ(S) in one step
                x = self.x_pre[rows]
                # the step carrying the prompt has taken the step's saving: the others in it add X(S) each
                own, others_piece, block = t0[:, None] + delta, (x * self.s_p).sum(axis=-1), np.zeros_like(delta)
                piece_sq = (x - others_piece[:, None] + a[:, None]) ** 2  # pieces of mean a, the spread of X
                itl_max = t0 + delta.max(axis=-1)
                rho = lam * a
            else:  # chunks of C tokens at (tC - t0)/C a token: n(S) - 1 whole-budget steps, then the rest with the decode batch
                c = self.chunk[rows][:, None]
                per_token = ((tc - t0) / self.chunk[rows])[:, None]
                pieces = np.ceil(self.s_val[None, :] / c - 1e-9)
                rest = self.s_val[None, :] - (pieces - 1) * c
                block = (pieces - 1) * tc[:, None]
                own = block + t0[:, None] + rest * per_token
                piece_sq = (pieces - 1) * (c * per_token) ** 2 + (rest * per_token) ** 2
                others_piece = a
            residual, others, wait_block, wait_probability = mixed_step_ttft_terms(
                lam, t0, a, (piece_sq * self.s_p).sum(axis=-1), others_piece, (block * self.s_p).sum(axis=-1),
                (block**2 * self.s_p).sum(axis=-1), self.lookahead_steps)
            service, wait = own, others + wait_block
            ex = (service * self.s_p).sum(axis=-1)
        stable = (lam <= self.capacity[rows] * (1 + 1e-12)) & (rho < 1)
        mem = pick(self.memory_required[rows])
        return ServingState(requests_per_s=lam, batch_size=batch, t0_s=t0, tc_s=tc, tpot_s=tpot, itl_max_s=itl_max,
                            service_s=service, service_mean_s=ex, extra_s=extra, utilization=rho, wait_mean_s=wait,
                            residual_s=residual, ttft_mean_s=residual + wait + ex + (extra * self.s_p).sum(axis=-1),
                            stable=stable, memory_required_bytes_per_gpu=mem, rows=rows, wait_probability=wait_probability)

    def ttft_tail(self, st, t, extra_s=0.0):
        """P(TTFT > t) at a state from `state`; `extra_s` (seconds, per prompt length) adds to the state's own."""
        extra = st.extra_s + np.broadcast_to(np.asarray(extra_s, float), st.service_s.shape)
        return ttft_tail_probability(np.broadcast_to(np.asarray(t, float), np.broadcast_shapes(np.shape(t), st.tpot_s.shape)), st.residual_s, st.service_s, extra,
                                     self.s_p, st.wait_probability, st.wait_mean_s)

    def ttft_percentile(self, st, q, extra_s=0.0):
        extra = st.extra_s + np.broadcast_to(np.asarray(extra_s, float), st.service_s.shape)
        return ttft_percentile_s(q, st.residual_s, st.service_s, extra, self.s_p, st.wait_probability, st.wait_mean_s)

    def in_flight(self, lam, rows=None) -> np.ndarray:
        """λ·R(λ), R = TTFT_mean + E[O-1]·TPOT: the requests in flight at rate λ (Little's law over one request's
        whole response), i.e. the clients a closed loop with no think time keeps busy at that rate (`closed_loop`);
        inf where the rate is not stable."""
        st = self.state(lam, rows)
        with np.errstate(invalid="ignore"):
            return np.where(st.stable, lam * (st.ttft_mean_s + self.eo1 * st.tpot_s), np.inf)

    def max_batch_size_fits(self, st) -> np.ndarray:
        """Largest decode batch memory (and the cap) allows at the state's workspace."""
        return np.minimum(np.maximum(np.floor(self.kv_free_bytes(st) / self.kv_bytes_per_sequence), 0), self.cap[st.rows])

    def kv_free_bytes(self, st) -> np.ndarray:
        """Bytes per GPU left for the KV cache at the state's workspace: the engine's memory less weights, reserve and workspace."""
        return self.memory_available[st.rows, 0] - self.weight_bytes - self.reserve_bytes - self.workspace[st.rows, 0]

    def kv_pool_tokens(self, st) -> np.ndarray:
        """KV slots (tokens) the pool holds at the state's workspace: `kv_free_bytes` / the KV bytes of one token per GPU
        (`parallelism.kv_bytes_per_gpu` of one slot): what an engine admitting by future KV counts (`future_kv_fits`)."""
        return np.maximum(np.floor(self.kv_free_bytes(st) / self.kv_bytes_per_slot), 0)


# ------------------------------------------------------------ public entry points
class ServingPoint(BaseModel):
    """One replica in steady state under continuous batching. Seconds, requests/s, tokens/s, bytes, USD."""

    model_config = ConfigDict(frozen=True)
    model: str
    hardware: str
    deployment: Deployment
    prompt_tokens: LengthDist
    output_tokens: LengthDist
    chunk_tokens: int | None
    gpus_per_replica: int
    requests_per_s: float = Field(description="arrival rate this replica serves")
    capacity_requests_per_s: float = Field(description="the largest stable rate (memory or prefill limited)")
    stable: bool
    reason: str = Field(description="empty when stable; else why not")
    batch_size: float = Field(description="mean decode batch (Little's law)")
    max_batch_size_fits: int = Field(description="largest batch memory holds at the 99th-percentile context, within the engine's running-sequence cap")
    decode_step_s: float = Field(description="t0: a decode-only step at the mean context")
    chunked_step_s: float = Field(description="tC: a step carrying a prefill chunk (NaN without chunking)")
    tpot_s: float = Field(description="mean time per output token (mean step)")
    itl_max_s: float = Field(description="worst gap between two tokens: a chunked step, or a decode step plus a whole prefill")
    prefill_utilization: float = Field(description="ρ of the prefill server")
    ttft_wait_mean_s: float
    ttft_mean_s: float
    ttft_p50_s: float
    ttft_p90_s: float
    ttft_p99_s: float
    output_tokens_per_s: float
    output_tokens_per_s_per_gpu: float
    memory_required_bytes_per_gpu: float
    memory_available_bytes_per_gpu: float
    usd_per_hour: float
    usd_per_million_output_tokens: float
    notes: tuple[str, ...] = Field((), description="what the figures assume beyond the inputs (e.g. running past max_context)")
    bands: dict[str, Band] = Field(default_factory=dict, description=(
        "80% error bands of the TTFT figures and tpot_s (and output_tokens_per_s under a closed loop, where the "
        "rate is predicted) from the published corpus (`roofline.bands`)"))

    # the names of issue 11's one-spelling rename, kept a while for callers that read them
    num_gpus = renamed("num_gpus", "gpus_per_replica")
    batch_limit = renamed("batch_limit", "max_batch_size_fits")
    cost_per_hour_usd = renamed("cost_per_hour_usd", "usd_per_hour")
    cost_per_million_output_tokens_usd = renamed("cost_per_million_output_tokens_usd", "usd_per_million_output_tokens")
    memory_required_bytes = renamed("memory_required_bytes", "memory_required_bytes_per_gpu")
    memory_available_bytes = renamed("memory_available_bytes", "memory_available_bytes_per_gpu")


def load_pair(model, hardware):
    return as_model(model), as_hardware(hardware)


def check_positive_int(value, field: str) -> None:
    """None, or a positive integer (not a bool): the engine knobs `chunk_tokens` and `max_batch_size`."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
        raise SpecError(field, f"must be a positive integer or None, got {value!r}")


def stable_side(capacity_requests_per_s):
    """The capacity point approached from the stable side, μ·(1 − 10⁻⁹) (scalar or array): at λ = μ itself the
    replica is unstable (the prefill server's ρ or the batch's memory at its limit), a hair below it every figure is
    finite and meets its limit. Used wherever the figures at capacity are read (`closed_loop`'s upper rate,
    `finite_overload`'s saturated state, `overload_run`'s slots, the planner's upper bracket)."""
    return capacity_requests_per_s * (1 - 1e-9)


def require_tp_replica(dep: Deployment, what: str, instead: str | None = None, field: str = "deployment",
                       attention_dp: bool = False) -> None:
    """The runs stepped one engine step at a time (waves, the stepped overload run, offline waves, the block queue) are
    modelled for a tensor-parallel replica only: pp = ep = 1 without attention_dp (with it where `attention_dp` says the
    run models it: `wave`), else a one-line error saying `what` ("waves are", ...) and what to use `instead`."""
    if not (dep.is_tp_group if attention_dp else dep.is_tp_replica):
        dp = ", attention_dp" if dep.attention_dp else ""
        raise SpecError(field, f"{what} modelled for tp replicas only (pp=1, ep=1, no attention_dp), got pp={dep.pp}, "
                               f"ep={dep.ep}{dp}" + (f"; {instead}" if instead else ""))


def check_requests(requests, field: str = "requests") -> int:
    """A finite run's n: a positive integer (not a bool, not a fraction of a request), as an int."""
    if isinstance(requests, bool) or not isinstance(requests, (int, np.integer)) or requests < 1:
        raise SpecError(field, f"must be a positive integer number of requests, got {requests!r}")
    return int(requests)


def fixed_lengths(traffic: "Traffic", run: str, instead: str) -> tuple[float, float]:
    """(S, O) of a run stepped token by token (waves, the block queue): both lengths fixed (requests of different
    lengths finish apart) and whole tokens, else a one-line error naming the length, what `run` needs and what to use
    `instead`."""
    for field in ("prompt_tokens", "output_tokens"):
        d = getattr(traffic, field)
        if d.kind != "fixed":
            raise SpecError(field, f"{run} needs fixed lengths (requests of different lengths finish apart); {instead}")
        if d.tokens != math.floor(d.tokens):
            raise SpecError(field, f"{run} steps whole tokens, got {d.tokens:g}; give an integer")
    return traffic.prompt_tokens.tokens, traffic.output_tokens.tokens


def check_chunk_tokens(model: ModelSpec, chunk_tokens) -> None:
    """None, or a positive integer no larger than the model's context: a prefill budget per step above the
    longest prompt the model takes is whole-prompt prefill, and one of 10^9 tokens would size a workspace
    for a step no engine runs (65,538 GB per GPU was reported)."""
    check_positive_int(chunk_tokens, "chunk_tokens")
    if chunk_tokens is not None and chunk_tokens > model.max_context:
        raise SpecError("chunk_tokens", f"{chunk_tokens:,} tokens per step exceeds max_context={model.max_context:,} of {model.name}: "
                                        "a budget above the longest prompt is whole-prompt prefill; leave chunk_tokens unset for that")


def check_traffic(model: ModelSpec, requests_per_s, prompt, output, chunk_tokens) -> Traffic:
    """The `Traffic` of the loose arguments the serving functions take, with the chunk budget checked too:
    one line naming the first bad field. A context past the model's max_context is predicted, with a note
    (`parallelism.check`)."""
    traffic = Traffic.of(requests_per_s, prompt, output)
    check_chunk_tokens(model, chunk_tokens)
    return traffic


def batch_grid_for(model: ModelSpec, rd: ResolvedDeployment, hws: list[HardwareProfile], traffic: Traffic,
                   max_batch_size: int | None) -> np.ndarray:
    """The batch grid up to the most sequences any of the devices holds beside the weights (and the cap); for an
    engine that admits by future KV (`EngineProfile.admission` "future_kv", `overload_run`) each sequence holds at
    least its prompt and one token, so up to the most of those."""
    context = traffic.memory_context_tokens
    if rd.engine is not None and rd.engine.admission == "future_kv":
        context = traffic.prompt_tokens.percentile(1 - MEMORY_PERCENTILE) + 1
    w, kv = replica_memory_bytes(model, rd, rd.dep.tp, context)
    upper = max(1.0, max((h.memory_bytes - w) / kv for h in hws))
    if max_batch_size is not None:
        upper = min(upper, max_batch_size)
    lim = engine_limits(rd, hws)
    if lim is not None:
        upper = max(1.0, min(upper, float(lim[0].max())))
    return batch_grid(upper)


def curves_for(model: ModelSpec, hw: HardwareProfile, dep: Deployment, traffic: Traffic, chunk_tokens: int | None,
               max_batch_size: int | None = None, decode_only: bool = False, prefill_only: bool = False) -> Curves:
    """The curves of one deployment on one device, checked (`parallelism.check`) at the traffic's memory workload;
    the device timed with the kernel tables of the deployment engine's framework where shipped (`engines.engine_tables`).
    `decode_only`: a disaggregated decode pool (no prefill); `prefill_only`: a prefill pool, whose prompts do not share
    steps with a decode batch (no mixed steps: the M/G/1 prefill server)."""
    hw = engine_tables(hw, dep.engine)
    rd = check(model, hw, traffic.memory_workload(), dep)
    return Curves(model, rd, dep.tp, [hw], traffic, chunk_tokens, batch_grid_for(model, rd, [hw], traffic, max_batch_size),
                  max_batch_size, decode_only, prefill_only)


def steady_state(model, hardware, requests_per_s: float, prompt_tokens, output_tokens, deployment: Deployment | None = None,
                 chunk_tokens: int | None = None, max_batch_size: int | None = None) -> ServingPoint:
    """One replica under `requests_per_s` Poisson arrivals (see the module docstring for every formula).

    `prompt_tokens` / `output_tokens`: an int, a `LengthDist` or a string like "lognormal:2048:0.5".
    `chunk_tokens`: prefill tokens per step (chunked prefill, mixed with decode); None: the engine's token budget when
    it chunks prefill into steps that also decode (`Deployment.engine`), else whole-prompt prefill passes.
    `max_batch_size`: a cap on running sequences below the engine's own (vLLM max_num_seqs). An arrival rate above
    the capacity is returned with stable=False and the reason; its latencies are then inf.
    """
    check_positive_int(max_batch_size, "max_batch_size")
    model, hw = load_pair(model, hardware)
    dep = deployment or Deployment()
    traffic = check_traffic(model, requests_per_s, prompt_tokens, output_tokens, chunk_tokens)
    cv = curves_for(model, hw, dep, traffic, chunk_tokens, max_batch_size)
    return _point(cv, model, hw, dep, traffic, chunk_tokens, float(requests_per_s))


def unfit_reason(cv: Curves) -> str:
    """Why the replica of `cv` (its first device row) serves nothing: required against available bytes per GPU at batch 1."""
    return (f"does not fit: needs {fmt.gigabytes(cv.memory_required[0, 0])} per GPU at batch 1 of "
            f"{fmt.gigabytes(cv.memory_available[0, 0])}")


def _point(cv: Curves, model: ModelSpec, hw: HardwareProfile, dep: Deployment, traffic: Traffic, chunk_tokens, lam: float,
           rate_predicted: bool = False, admission_wait_s: float = 0.0) -> ServingPoint:
    """The ServingPoint at rate `lam` (the traffic's lengths). `rate_predicted`: the rate came out of the model
    (a closed loop), so the throughput gets a band too. `admission_wait_s`: a wait for a batch slot added to
    every TTFT figure."""
    p, o = traffic.prompt_tokens, traffic.output_tokens
    st = cv.state(np.array([lam]))
    one = lambda x: float(np.asarray(x).ravel()[0])  # noqa: E731
    cap = float(cv.capacity[0])
    stable = bool(st.stable[0])
    if not cv.fits[0]:
        reason = unfit_reason(cv)
    elif not stable:
        reason = f"unstable: arrival rate {lam:g} requests/s exceeds the capacity of {cap:.3g} requests/s"
    else:
        reason = ""
    pcts = cv.ttft_percentile(st, np.array(TTFT_PERCENTILES)[:, None]).ravel() if stable else [math.inf] * len(TTFT_PERCENTILES)
    inf_if = (lambda x: one(x) if stable else math.inf)  # noqa: E731
    ttft = {"ttft_wait_mean_s": inf_if(st.wait_mean_s), "ttft_mean_s": inf_if(st.ttft_mean_s),
            **{f"ttft_p{100 * q:g}_s": float(v) for q, v in zip(TTFT_PERCENTILES, pcts)}}
    ttft = {k: v + admission_wait_s for k, v in ttft.items()}
    tokens = lam * o.mean_tokens
    hour = hw.price_usd_per_gpu_hour * cv.gpus
    tpot = inf_if(st.tpot_s)
    banded = {**{k: (v, "ttft_serving") for k, v in ttft.items() if k != "ttft_wait_mean_s"}, "tpot_s": (tpot, "tpot_serving"),
              **({"output_tokens_per_s": (tokens, "throughput_serving")} if rate_predicted else {})}
    return ServingPoint(
        model=model.name, hardware=hw.name, deployment=dep, prompt_tokens=p, output_tokens=o,
        chunk_tokens=None if cv.chunk is None else int(cv.chunk[0]),
        gpus_per_replica=cv.gpus, requests_per_s=lam, capacity_requests_per_s=cap, stable=stable, reason=reason,
        batch_size=inf_if(st.batch_size), max_batch_size_fits=int(cv.max_batch_size_fits(st)[0]),
        decode_step_s=one(st.t0_s), chunked_step_s=one(st.tc_s), tpot_s=tpot, itl_max_s=inf_if(st.itl_max_s),
        prefill_utilization=one(st.utilization), **ttft,
        output_tokens_per_s=tokens, output_tokens_per_s_per_gpu=tokens / cv.gpus,
        memory_required_bytes_per_gpu=inf_if(st.memory_required_bytes_per_gpu), memory_available_bytes_per_gpu=float(hw.memory_bytes),
        usd_per_hour=hour, usd_per_million_output_tokens=usd_per_million_tokens(hour, tokens) if stable else math.nan,
        notes=tuple(cv.notes), bands=bands_for(banded, hw, cv.rd.weights.dtype.name, cv.rd.act.name),
    )


def frontier(model, hardware, prompt_tokens, output_tokens, deployment: Deployment | None = None,
             chunk_tokens: int | None = None, max_batch_size: int | None = None) -> "pd.DataFrame":
    """The latency-throughput frontier across decode batch sizes: for each batch B the replica can hold,
    the steady state at the rate λ(B) that keeps B busy (module docstring), as output tokens/s per user
    (1 / TPOT) and output tokens/s per GPU (λ E[O] / GPUs). `hardware` takes one id or a list.
    `pareto` marks the points no other point of the same device beats on both axes."""
    check_positive_int(max_batch_size, "max_batch_size")
    import pandas as pd

    hws = [hardware] if isinstance(hardware, (str, HardwareProfile)) else list(hardware)
    if not hws:
        raise SpecError("hardware", "needs at least one hardware id")
    frames = []
    for h in hws:
        m, hw = load_pair(model, h)
        dep = deployment or Deployment()
        traffic = check_traffic(m, None, prompt_tokens, output_tokens, chunk_tokens)
        o = traffic.output_tokens
        cv = curves_for(m, hw, dep, traffic, chunk_tokens, max_batch_size)
        keep = cv.ok[0]
        lam = cv.lam[0][keep]
        st = cv.state(lam, rows=np.zeros(len(lam), int))
        df = pd.DataFrame({
            "hardware": hw.name, "tp": dep.tp, "pp": dep.pp, "ep": dep.ep, "gpus": cv.gpus, "batch_size": cv.grid[keep], "requests_per_s": lam,
            "tpot_s": st.tpot_s, "output_tokens_per_s_per_user": 1 / st.tpot_s,
            "output_tokens_per_s_per_gpu": lam * o.mean_tokens / cv.gpus, "ttft_mean_s": st.ttft_mean_s,
            "prefill_utilization": st.utilization,
        })
        per_user, per_gpu = df["output_tokens_per_s_per_user"].to_numpy(), df["output_tokens_per_s_per_gpu"].to_numpy()
        df["pareto"] = [not np.any((per_user >= u) & (per_gpu >= g) & ((per_user > u) | (per_gpu > g))) for u, g in zip(per_user, per_gpu)]
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def capacity_requests_per_s(model, hardware, prompt_tokens, output_tokens, deployment: Deployment | None = None,
                            chunk_tokens: int | None = None, max_batch_size: int | None = None) -> float:
    """The largest stable request rate of one replica (module docstring: the top of λ(B) before memory, the
    batch cap or the prefill server stops it); 0 when it does not fit. Offline max-throughput runs
    (`trtllm-bench throughput`, `vllm bench throughput`) measure this rate: λ_max·E[O] output tokens/s."""
    check_positive_int(max_batch_size, "max_batch_size")
    model, hw = load_pair(model, hardware)
    traffic = check_traffic(model, None, prompt_tokens, output_tokens, chunk_tokens)
    return float(curves_for(model, hw, deployment or Deployment(), traffic, chunk_tokens, max_batch_size).capacity[0])


def closed_loop(model, hardware, concurrency: float, prompt_tokens, output_tokens, deployment: Deployment | None = None,
                chunk_tokens: int | None = None, max_batch_size: int | None = None, synchronized: bool = False) -> ServingPoint:
    """One replica driven by a closed loop of `concurrency` clients (`vllm bench serve --max-concurrency N`,
    genai-perf, AIPerf): each client sends its next request as soon as the last one finished.

    The response-time law of a closed system (Little's law over the whole loop, no think time) ties the
    throughput λ to the response time R = TTFT + E[O-1]·TPOT of one request:

        N = λ · R(λ) = λ · (TTFT_mean(λ) + E[O-1] · TPOT(λ))

    The open-loop steady state (`steady_state`, module docstring) gives TTFT and TPOT at each λ; N·λ⁻¹
    falls and R(λ) rises with λ, so the root is unique and found by bracketing on a log grid of rates
    below the capacity, then bisection. When N exceeds what the replica sustains (λ·R < N even at the
    capacity: N is more than the batch memory holds), λ is the capacity and the surplus requests wait
    for a slot: R = N / λ, the extra wait N/λ - R(λ) added to every TTFT figure.

    This is the closed loop seen through Poisson arrivals (the M/G/1 prefill queue): a stand-in until a
    native closed-loop model exists. Arrivals of a closed loop are smoother than Poisson, so the TTFT
    queueing term is an upper bound at high load.

    `synchronized`: the clients start together with fixed lengths, so requests come in waves of N (`wave`,
    `Traffic.synchronized`); a wave larger than the batch memory holds (or the cap) falls back to the
    loop above, with a note.
    """
    check_positive_int(max_batch_size, "max_batch_size")
    if concurrency is None:
        raise SpecError("concurrency", "must be a positive number of clients, got None")
    check_concurrency(concurrency)
    model, hw = load_pair(model, hardware)
    dep = deployment or Deployment()
    if synchronized:
        Traffic.of(None, prompt_tokens, output_tokens, concurrency=concurrency, synchronized=True)  # fixed lengths, checked
    traffic = check_traffic(model, None, prompt_tokens, output_tokens, chunk_tokens)
    cv = curves_for(model, hw, dep, traffic, chunk_tokens, max_batch_size)
    if synchronized:
        fits = wave_batch_limit(cv)
        if cv.rd.engine is not None and cv.rd.engine.mixed_prefill_decode:
            cv.notes.append(f"{cv.rd.engine.name} mixes prefill and decode, so a wave's requests finish apart and later "
                            "waves spread out (`wave`): modelled as the Poisson closed loop")
        elif round(concurrency) <= fits:
            return _wave_point(cv, model, hw, dep, traffic,
                               wave(model, hw, concurrency, prompt_tokens, output_tokens, dep, chunk_tokens))
        else:
            cv.notes.append(f"a synchronized wave of {concurrency:g} requests exceeds the batch the replica holds: "
                            "modelled as the Poisson closed loop")
    cap = float(cv.capacity[0])
    if not cv.fits[0] or cap <= 0:
        return _point(cv, model, hw, dep, traffic, chunk_tokens, max(cap, 1e-12))
    n = float(concurrency)

    def in_flight(lam: np.ndarray) -> np.ndarray:  # λ·R(λ), the clients the loop keeps busy at rate λ
        return cv.in_flight(lam, rows=np.zeros(len(lam), int))

    top = stable_side(cap)
    grid = top * np.logspace(-9, 0, 91)
    busy = in_flight(grid)
    if not busy[-1] >= n:  # the replica saturates below N clients: λ = capacity, the rest wait for a slot
        return _point(cv, model, hw, dep, traffic, chunk_tokens, top, rate_predicted=True,
                      admission_wait_s=(n - float(busy[-1])) / top)
    i = int(np.argmax(busy >= n))
    lo, hi = (grid[i - 1] if i > 0 else 0.0), grid[i]
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if in_flight(np.array([mid]))[0] >= n:
            hi = mid
        else:
            lo = mid
        if hi - lo <= 1e-10 * hi:
            break
    return _point(cv, model, hw, dep, traffic, chunk_tokens, hi, rate_predicted=True)


# ------------------------------------------------------------ a finite run offered above capacity
def overload_start_s(requests: int, requests_per_s: float, capacity_requests_per_s: float, slots: int) -> np.ndarray:
    """When each of n = `requests` requests offered at λ = `requests_per_s` above a replica's capacity μ =
    `capacity_requests_per_s` is admitted to its running batch of c = `slots` sequences (a D/D/c queue, the fluid
    picture of `finite_overload`): request i (0-based) arrives at t_i = i/λ; the first c are admitted on arrival;
    request i ≥ c takes the slot request i − c leaves, c/μ after that one was admitted (Little's law at
    saturation: c sequences held, μ leaving per second, so each holds its slot c/μ):

        s_i = max(t_i, s_{i−c} + c/μ) = i/λ + ⌊i/c⌋ · c · (1/μ − 1/λ)      (λ ≥ μ; s_i = t_i when λ ≤ μ)

    Worked example (n = 10, λ = 2/s, μ = 1/s, c = 2): s = 0, 0.5, 2, 2.5, 4, 4.5, 6, 6.5, 8, 8.5 s; waits
    s_i − t_i = 0, 0, 1, 1, 2, 2, 3, 3, 4, 4 s. Seconds from the first arrival."""
    n, c = int(requests), int(slots)
    lam, mu = float(requests_per_s), float(capacity_requests_per_s)
    bad = [f for f, ok in (("requests", n >= 1), ("slots", c >= 1), ("requests_per_s", math.isfinite(lam) and lam > 0),
                           ("capacity_requests_per_s", math.isfinite(mu) and mu > 0)) if not ok]
    if bad:
        raise SpecError(bad[0], f"an overloaded run needs positive requests, slots and rates, got n={requests!r}, c={slots!r}, "
                                f"λ={requests_per_s!r}, μ={capacity_requests_per_s!r}")
    i = np.arange(n, dtype=float)
    return i / lam + np.floor(i / c) * c * max(1 / mu - 1 / lam, 0.0)


@dataclass(frozen=True)
class FiniteOverload:
    """A finite benchmark run offered above the replica's capacity (`finite_overload`): per request its arrival,
    admission, slot wait, TTFT and end-to-end latency, and the run's figures. Seconds, requests/s, tokens/s."""

    requests: int  # n, offered to this replica
    requests_per_s: float  # λ offered
    capacity_requests_per_s: float  # μ, the replica's capacity
    slots: int  # c, the running batch at capacity
    arrival_s: np.ndarray  # (n,) t_i = i/λ
    start_s: np.ndarray  # (n,) s_i: admitted to the running batch (`overload_start_s`)
    wait_s: np.ndarray  # (n,) s_i − t_i
    ttft_s: np.ndarray  # (n,) wait + the mean TTFT at capacity
    tpot_s: float  # the mean step at capacity
    e2e_s: np.ndarray  # (n,) TTFT_i + E[O-1]·TPOT
    makespan_s: float  # first arrival to last completion: s_{n-1} + TTFT_sat + E[O-1]·TPOT
    output_tokens_mean: float  # E[O]
    ttft_p50_s: float
    ttft_p90_s: float
    ttft_p99_s: float
    saturated: ServingPoint  # the steady state at the capacity point the figures come from

    @property
    def ttft_mean_s(self) -> float:
        return float(np.mean(self.ttft_s))

    @property
    def wait_mean_s(self) -> float:
        return float(np.mean(self.wait_s))

    @property
    def e2e_mean_s(self) -> float:
        return float(np.mean(self.e2e_s))

    @property
    def e2e_p50_s(self) -> float:
        return float(np.median(self.e2e_s))

    @property
    def itl_mean_s(self) -> float:
        """Every token's gap is the saturated step (the fill and the drain are not modelled): TPOT_sat."""
        return self.tpot_s

    @property
    def achieved_requests_per_s(self) -> float:
        """n / makespan: what the benchmark reports as its request throughput (below μ; → μ for n ≫ c)."""
        return self.requests / self.makespan_s

    @property
    def output_tokens_per_s(self) -> float:
        """n · E[O] / makespan (vLLM / SGLang bench_serving: total output tokens over the run's duration)."""
        return self.achieved_requests_per_s * self.output_tokens_mean


class OverloadTimes(NamedTuple):
    """Per request (n,) its arrival, admission, slot wait and end-to-end latency, and the run's makespan (`overload_of`).
    Seconds."""

    arrival_s: np.ndarray
    start_s: np.ndarray
    wait_s: np.ndarray
    e2e_s: np.ndarray
    makespan_s: float


def overload_of(requests: int, requests_per_s: float, capacity_requests_per_s: float, slots: int, ttft_saturated_s: float,
                tpot_s: float, output_tokens_mean: float) -> OverloadTimes:
    """(arrival, start, wait, e2e, makespan) of `finite_overload`'s formulas from the saturated figures: TTFT_i =
    W_i + TTFT_sat, e2e_i = TTFT_i + (E[O] − 1)·TPOT, makespan = s_{n−1} + TTFT_sat + (E[O] − 1)·TPOT.
    Worked example (n = 10, λ = 2/s, μ = 1/s, c = 1, TTFT_sat + (E[O] − 1)·TPOT = 1 s): waits 0, 0.5, .., 4.5 s
    (mean 2.25 s), makespan 9 + 1 = 10 s, 1 request/s."""
    start = overload_start_s(requests, requests_per_s, capacity_requests_per_s, slots)
    arrival = np.arange(int(requests), dtype=float) / float(requests_per_s)
    wait = start - arrival
    response = float(ttft_saturated_s) + (float(output_tokens_mean) - 1) * float(tpot_s)
    return OverloadTimes(arrival, start, wait, wait + response, float(start[-1]) + response)


def finite_overload(model, hardware, requests: int, requests_per_s: float, prompt_tokens, output_tokens,
                    deployment: Deployment | None = None, chunk_tokens: int | None = None,
                    max_batch_size: int | None = None) -> FiniteOverload:
    """A finite run of n = `requests` requests offered at λ = `requests_per_s` to one replica whose capacity μ is
    below λ (a serving benchmark's `--request-rate` above what the replica serves: the queue grows for the n/λ s of
    arrivals, then drains). `steady_state` calls such a rate unstable, rightly for an endless stream; the finite
    run has no steady state but a transient, and this is its fluid (mean-value) model, built only from the
    steady state at the capacity point (the module docstring's curves, nothing new fitted):

    * at capacity the replica holds c sequences in its running batch (the batch at λ = μ, Little's law
      B = μ·E[O−1]·TPOT; memory or the engine's running-sequence cap, or the prefill server, stops λ(B) there),
      each decoding at TPOT_sat and waiting TTFT_sat (residual, prefill queue and prefill at μ) for its first token;
    * request i arrives at t_i = i/λ: the mean arrival time of a Poisson stream as much as of a paced one
      (vLLM's benchmark_serving.py and SGLang's bench_serving draw exponential gaps at `--request-rate`: Poisson; the
      fluid model keeps the means, and the √i/λ spread of Poisson arrival times is not modelled);
    * the engine admits a waiting request when a slot frees (first come, first served); once the batch is full
      it frees slots at μ, so request i is admitted at s_i = i/λ + ⌊i/c⌋·c·(1/μ − 1/λ) (`overload_start_s`: a
      D/D/c queue with holding time c/μ), waits W_i = s_i − t_i, which grows linearly over the run;
    * TTFT_i = W_i + TTFT_sat; each decodes at the saturated step, TPOT = TPOT_sat; e2e_i = TTFT_i + E[O−1]·TPOT;
    * the last request finishes at s_{n−1} + TTFT_sat + E[O−1]·TPOT (the makespan); the run's output
      throughput is n·E[O] / makespan, ≈ μ·E[O] for n ≫ c, less for a small n (the fill and the drain).

    TTFT percentiles are those of the mixture over the n requests: P(TTFT > t) = (1/n) Σ_i P(TTFT_sat > t − W_i),
    with the saturated state's M/G/1 tail (`Curves.ttft_tail`), found by bisection.

    At λ → μ⁺ every W_i → 0 and the figures are the steady state at μ, where `steady_state` with
    `finite_run_duration_s` ends at λ → μ⁻: the two meet. A run of n ≤ c requests never fills the batch of the
    capacity point, so the saturated figures are not its own: refused (SpecError); `overload_run` steps such a run
    through the scheduler. Where the capacity is the prefill server's (whole-prompt prefill, μ·a → 1), c is the
    large batch at which t̄ = t0/(1 − μa) has grown to sustain μ; a run there is prefill-bound (prompts queue for
    the prefill server, decode waits), which `overload_run` describes and this model does not. Worked number (n = 500, λ = 32/s, μ = 16/s, c = 100): W_i = ⌊i/100⌋ · 100 ·
    (1/16 − 1/32) = 0, 3.125, .., 12.5 s, mean 6.25 s; s_499 = 499/32 + 12.5 = 28.1 s.

    Not modelled: the fill (the first c requests decode in a batch still growing, faster than TPOT_sat) and the
    drain (the last ones in a shrinking batch), so TPOT is the saturated step's, an upper bound for those;
    preemption, and admission by free KV rather than a slot count (an engine that admits past c on the running
    set's future KV, SGLang 0.4.0's: `future_kv_fits`, which `overload_run` steps, waits less and steps slower).
    """
    check_requests(requests)
    check_positive_int(max_batch_size, "max_batch_size")
    model, hw = load_pair(model, hardware)
    dep = deployment or Deployment()
    traffic = check_traffic(model, requests_per_s, prompt_tokens, output_tokens, chunk_tokens)
    cv = curves_for(model, hw, dep, traffic, chunk_tokens, max_batch_size)
    cap = float(cv.capacity[0])
    lam = float(requests_per_s)
    if not cv.fits[0] or cap <= 0:
        raise SpecError("deployment", unfit_reason(cv))
    if lam <= cap:
        raise SpecError("requests_per_s", f"{lam:g} requests/s is within the capacity of {cap:.3g} requests/s: use steady_state "
                                          "(and finite_run_duration_s for the run's wall time)")
    mu = stable_side(cap)  # the capacity point, on the stable side (as `closed_loop`)
    sat = _point(cv, model, hw, dep, traffic, chunk_tokens, mu)
    st = cv.state(np.array([mu]))
    slots = max(1, int(math.floor(sat.batch_size + 1e-9)))
    if requests <= slots:
        raise SpecError("requests", f"a run of {requests} requests at {lam:g}/s never fills the {slots}-sequence batch of the capacity "
                                    f"point ({cap:.3g} requests/s): its transient (a batch growing to at most {requests} while "
                                    "the prefill queue builds) is not this fluid model's: "
                                    + ("use overload_run, which steps it" if dep.is_tp_replica else
                                       "overload_run steps such a run on a tp replica only (pp=1, ep=1, no attention_dp); "
                                       "run more requests, or a tp replica"))
    o = traffic.output_tokens.mean_tokens
    arrival, start, wait, e2e, makespan = overload_of(requests, lam, mu, slots, sat.ttft_mean_s, sat.tpot_s, o)
    waits, counts = np.unique(wait, return_counts=True)
    weights = counts / counts.sum()

    def over(t):  # P(TTFT > t), the mixture over the run's requests
        return float((weights * cv.ttft_tail(st, t - waits)).sum())

    pcts = []
    for q in TTFT_PERCENTILES:
        lo, hi = 0.0, float(waits[-1]) + sat.ttft_p99_s + sat.ttft_mean_s
        for _ in range(48):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if over(mid) > 1 - q else (lo, mid)
        pcts.append(hi)
    return FiniteOverload(requests=int(requests), requests_per_s=lam, capacity_requests_per_s=mu, slots=slots,
                          arrival_s=arrival, start_s=start, wait_s=wait, ttft_s=wait + sat.ttft_mean_s, tpot_s=sat.tpot_s,
                          e2e_s=e2e, makespan_s=makespan, output_tokens_mean=o, ttft_p50_s=pcts[0], ttft_p90_s=pcts[1],
                          ttft_p99_s=pcts[2], saturated=sat)


def future_kv_fits(free_tokens: float, tokens_left, tokens_occupied, new_prompt_tokens: float, new_output_tokens: float) -> bool:
    """Whether an engine that admits by future KV (`EngineProfile.admission` "future_kv": SGLang 0.4.0.post1
    `PrefillAdder.add_one_req_ignore_eos`, python/sglang/srt/managers/schedule_policy.py lines 214-282, the path every
    ignore_eos request takes with the radix cache off) lets a new request of S = `new_prompt_tokens` prompt and O =
    `new_output_tokens` output tokens join, with F = `free_tokens` KV slots free in its pool and the running requests
    j holding o_j = `tokens_occupied` tokens (prompt + generated) with t_j = `tokens_left` still to generate (their
    max_new_tokens less what they have; ignore_eos makes the ratio on it 1.0, not the decaying new_token_ratio).

    The engine lists (t, o) for every request with t > 0, the new one as (O, S), sorts them by t ascending,
    t_0 ≤ .. ≤ t_{N−1}, and admits only if for every k

        F − S + Σ_{j<k} o_j − t_{k+1} · (N − k) > 0        (t_N := t_{N−1})

    i.e. by the time the k shortest have finished (and freed their o_j), the N − k still running have each grown by
    up to t_{k+1} more tokens (the engine takes the next request's t, the conservative side), and that still fits
    beside the new prompt. So the pool must hold the running set's future peak, not a whole context per sequence;
    a batch of requests at staggered stages holds about F / (S + O/2) of them where a slot rule holds F / (S + O).
    After a refusal the engine does not ask again until the running batch shrinks (batch_is_full, scheduler.py
    update_running_batch lines 893-897), though decode steps move each left side (F falls by N − 1 a step, each
    running t by one); `overload_schedule` does the same.

    Worked example: F = 100, one running request with t = 10, o = 50; a new request S = 20, O = 30: sorted (10, 50),
    (30, 20); k = 0: 100 − 20 − 30 · 2 = 20 > 0; k = 1: 100 − 20 + 50 − 30 · 1 = 100 > 0: admitted. With O = 45:
    k = 0: 100 − 20 − 45 · 2 = −10: refused."""
    t = np.append(np.asarray(tokens_left, float), float(new_output_tokens))
    o = np.append(np.asarray(tokens_occupied, float), float(new_prompt_tokens))
    keep = t > 0
    t, o = t[keep], o[keep]
    rem = float(free_tokens) - float(new_prompt_tokens)
    if t.size == 0:
        return rem > 0
    order = np.argsort(t, kind="stable")
    t, o = t[order], o[order]
    n = t.size
    steps = np.append(t[1:], t[-1])
    freed = np.cumsum(o) - o
    return bool(np.all(rem + freed - steps * (n - np.arange(n)) > 0))


@dataclass(frozen=True)
class OverloadSchedule:
    """The engine steps of a finite open-loop run (`overload_schedule`), per request: arrival, the end of the step
    that finished its prompt (its first token) and of the step that gave its last token; and every inter-token
    gap the run's decode steps produced, as distinct values with the number of tokens that saw each. Seconds."""

    arrival_s: np.ndarray  # (n,) i/λ
    first_token_s: np.ndarray  # (n,)
    last_token_s: np.ndarray  # (n,)
    gap_s: np.ndarray  # (G,) inter-token gaps
    gap_tokens: np.ndarray  # (G,) tokens that saw each gap


def overload_schedule(requests: int, requests_per_s: float, output_tokens: int, max_running: int, decode_step_s,
                      prefill_s: float | None = None, prompt_tokens: float | None = None, chunk_tokens: float | None = None,
                      chunk_step_s=None, kv_pool_tokens: float | None = None, prompt_step_s=None) -> OverloadSchedule:
    """Run n = `requests` requests arriving at t_i = i/λ through the serving model's own scheduler, step by step, with
    the steady state's step times (`Curves`: t0(B) = `decode_step_s(B)`, X = `prefill_s`, tC(B) = `chunk_step_s(B)`).

    First come, first served; a request holds a slot from its prefill to its last token, and at most `max_running`
    are held (memory or the engine's cap). Whole-prompt prefill (`prefill_s` given): whenever a prompt waits and a
    slot is free, the next step is that prompt's prefill pass, X s, which preempts decode (the module docstring's
    a = E[X]); its first token comes at the pass's end; otherwise the step decodes one token of each of the B held
    sequences in t0(B). Chunked prefill (`chunk_tokens` C, `prompt_tokens` S): every step decodes the B held
    sequences and carries up to C prompt tokens of the waiting prompts in order, in t0(B) + (T/C)(tC(B) − t0(B))
    for T prompt tokens (the module's a = E[S](tC − t0)/C per prompt; B = 1's step times when nothing decodes); a prompt's first token comes at the end of the
    step that takes its last prompt token. Whole prompts in the decode step (`prefill_s` X and `prompt_step_s` δ(B)
    given, with the step's token budget `chunk_tokens` C and `prompt_tokens` S: an engine with
    `EngineProfile.mixed_prefill_decode` and no chunking): every step decodes the B held sequences and carries the
    waiting prompts whole, in order, while their tokens fit C (the first always), in t0(B) + δ(B) + (k − 1) X for
    k prompts (the weights read once a step: the module docstring's "Mixed steps"); their first tokens come at the
    step's end. A request has O = `output_tokens` tokens: the first, then O − 1 decode
    steps. A request that arrives during a step waits for its end; an idle engine starts at the next arrival.

    Admission by future KV (`kv_pool_tokens` P given, with `prompt_tokens` S: an engine whose
    `EngineProfile.admission` is "future_kv"): a waiting request also needs `future_kv_fits` with the pool's free
    tokens F = P − Σ (S + k_j) and the held requests' t_j = O − 1 − k_j, o_j = S + 1 + k_j after k_j decode steps
    (a prompt being chunked counts as (O, S)); `max_running` is then the engine's running-sequence cap only. A
    refusal stands until a request finishes (the engine's batch_is_full flag, reset when the running batch shrinks).

    Worked example (whole prompt, X = 1 s, t0 = 0.5 s, λ = 2/s, n = 3, O = 2): prefills 0-1, 1-2, 2-3 s (the second
    and third prompts wait 0.5 and 1 s), then one decode step 3-3.5 s: TTFT 1, 1.5, 2 s; gaps 2.5, 1.5, 0.5 s;
    the run ends at 3.5 s.
    """
    n, m, cap = int(requests), int(output_tokens) - 1, int(max_running)
    lam = float(requests_per_s)
    if n < 1 or m < 1 or cap < 1 or not (math.isfinite(lam) and lam > 0):
        raise SpecError("requests", f"a run needs positive requests, at least 2 output tokens, a slot and a rate, got n={requests!r}, "
                                    f"O={output_tokens!r}, slots={max_running!r}, λ={requests_per_s!r}")
    chunked = prefill_s is None
    whole = prompt_step_s is not None  # whole prompts mixed into the decode step
    if chunked and (chunk_tokens is None or prompt_tokens is None or chunk_step_s is None):
        raise SpecError("chunk_tokens", "chunked prefill needs chunk_tokens, prompt_tokens and chunk_step_s (or give prefill_s)")
    if whole and (chunked or chunk_tokens is None or prompt_tokens is None):
        raise SpecError("prompt_step_s", "whole prompts in the decode step need prefill_s, chunk_tokens (the step's budget) "
                                         "and prompt_tokens")
    if kv_pool_tokens is not None and (prompt_tokens is None or not kv_pool_tokens > 0):
        raise SpecError("kv_pool_tokens", f"admission by future KV needs a positive pool and prompt_tokens, got "
                                          f"{kv_pool_tokens!r} and {prompt_tokens!r}")
    checked = (("chunk_tokens", chunk_tokens), ("prompt_tokens", prompt_tokens)) if chunked or whole else ()
    for field, value in checked + ((("prefill_s", prefill_s),) if not chunked else ()):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not 0 < value < math.inf:
            raise SpecError(field, f"must be a positive finite number, got {value!r}")

    def timed(dt, field: str) -> float:  # a step time that is not a finite number of seconds would stall the clock
        dt = float(dt)
        if not 0 <= dt < math.inf:
            raise SpecError(field, f"a step time must be a finite number of seconds >= 0, got {dt!r}")
        return dt
    arrival = np.arange(n, dtype=float) / lam
    first, last = np.full(n, np.nan), np.full(n, np.nan)
    join = np.zeros(n, dtype=np.int64)
    running: list[int] = []  # held sequences that decode, in the order they joined (all need m steps: FIFO finish)
    head = 0  # first of `running` still decoding
    fresh: list[int] = []  # joined since the last decode step: their next gap starts at their first token
    gaps: dict[float, int] = {}
    nxt, done, steps, now, last_decode = 0, 0, 0, 0.0, 0.0
    prefilling: list[int] = []  # chunked: admitted prompts not yet through
    left = np.full(n, float(prompt_tokens) if chunked or whole else 0.0)
    refused_at = -1  # `done` when the future-KV check last refused: it stands until a request finishes

    def admits(pending: int) -> bool:  # the future-KV check for the next waiting request, `pending` prompts not through
        nonlocal refused_at
        if kv_pool_tokens is None:
            return True
        if refused_at == done:
            return False
        s_tokens = float(prompt_tokens)
        k = steps - join[np.array(running[head:], dtype=np.int64)]
        t_left = np.concatenate([m - k, np.full(pending, m + 1.0)])
        occupied = np.concatenate([s_tokens + 1 + k, np.full(pending, s_tokens)])
        free = float(kv_pool_tokens) - float(np.sum(s_tokens + k)) - pending * s_tokens
        ok = future_kv_fits(free, t_left, occupied, s_tokens, m + 1)
        if not ok:
            refused_at = done
        return ok

    def decode(end: float) -> None:
        nonlocal steps, head, done, last_decode, fresh
        steps += 1
        old = len(running) - head - len(fresh)
        if old > 0:
            gaps[end - last_decode] = gaps.get(end - last_decode, 0) + old
        for f in fresh:
            gaps[end - first[f]] = gaps.get(end - first[f], 0) + 1
        fresh = []
        last_decode = end
        while head < len(running) and steps - join[running[head]] >= m:
            last[running[head]] = end
            head += 1
            done += 1

    while done < n:
        held = len(running) - head
        if not chunked and not whole:
            if nxt < n and arrival[nxt] <= now and held < cap and admits(0):  # a prefill pass preempts decode
                now += float(prefill_s)
                first[nxt], join[nxt] = now, steps
                running.append(nxt)
                fresh.append(nxt)
                nxt += 1
            elif held > 0:
                now += timed(decode_step_s(held), "decode_step_s")
                decode(now)
            elif arrival[nxt] <= now:  # nothing running and still refused: the request alone exceeds the pool
                raise SpecError("kv_pool_tokens", f"a request of {prompt_tokens} + {m + 1} tokens does not fit a pool of "
                                                  f"{kv_pool_tokens} tokens")
            else:
                now = arrival[nxt]
            continue
        while nxt < n and arrival[nxt] <= now and held + len(prefilling) < cap and admits(len(prefilling)):
            prefilling.append(nxt)
            nxt += 1
        budget, tokens, through = float(chunk_tokens), 0.0, []
        for r in prefilling:
            if whole:  # a prompt enters whole if it fits what is left of the budget (the first always)
                if through and tokens + left[r] > budget:
                    break
                tokens += left[r]
                left[r] = 0.0
                through.append(r)
                continue
            take = min(left[r], budget - tokens)
            left[r] -= take
            tokens += take
            if left[r] <= 0:
                through.append(r)
            if tokens >= budget:
                break
        if tokens == 0 and held == 0:
            if arrival[nxt] <= now:  # nothing running or prefilling and still refused: the request alone exceeds the pool
                raise SpecError("kv_pool_tokens", f"a request of {prompt_tokens} + {m + 1} tokens does not fit a pool of "
                                                  f"{kv_pool_tokens} tokens")
            now = arrival[nxt]
            continue
        b = max(held, 1)
        t0 = timed(decode_step_s(b), "decode_step_s")
        if whole:
            now += t0 + (timed(prompt_step_s(b), "prompt_step_s") + (len(through) - 1) * float(prefill_s) if through else 0.0)
        else:
            now += t0 + (tokens / float(chunk_tokens)) * (timed(chunk_step_s(b), "chunk_step_s") - t0) if tokens > 0 else t0
        if held > 0:
            decode(now)
        for r in through:
            prefilling.remove(r)
            first[r], join[r] = now, steps
            running.append(r)
            fresh.append(r)
    g = np.array(sorted(gaps))
    return OverloadSchedule(arrival_s=arrival, first_token_s=first, last_token_s=last, gap_s=g,
                            gap_tokens=np.array([gaps[x] for x in g], dtype=float))


@dataclass(frozen=True)
class OverloadRun:
    """A finite run stepped through the serving model's scheduler (`overload_run`): its schedule, the latency every
    request adds outside the steps, and the run's figures. Seconds, tokens/s."""

    schedule: OverloadSchedule
    request_s: float  # r: API and tokenizing, on every TTFT and e2e
    output_tokens_mean: float  # E[O]
    capacity_requests_per_s: float  # μ of the steady state, for reference
    max_running: int  # the slots the run could hold

    @property
    def ttft_s(self) -> np.ndarray:
        sc = self.schedule
        return self.request_s + sc.first_token_s - sc.arrival_s

    @property
    def e2e_s(self) -> np.ndarray:
        sc = self.schedule
        return self.request_s + sc.last_token_s - sc.arrival_s

    @property
    def ttft_mean_s(self) -> float:
        return float(np.mean(self.ttft_s))

    @property
    def ttft_p50_s(self) -> float:
        return float(np.quantile(self.ttft_s, TTFT_PERCENTILES[0]))

    @property
    def ttft_p90_s(self) -> float:
        return float(np.quantile(self.ttft_s, TTFT_PERCENTILES[1]))

    @property
    def ttft_p99_s(self) -> float:
        return float(np.quantile(self.ttft_s, TTFT_PERCENTILES[2]))

    @property
    def e2e_mean_s(self) -> float:
        return float(np.mean(self.e2e_s))

    @property
    def e2e_p50_s(self) -> float:
        return float(np.median(self.e2e_s))

    @property
    def itl_mean_s(self) -> float:
        """The mean inter-token gap over every token of the run (benchmark_serving's mean ITL)."""
        sc = self.schedule
        return float(np.dot(sc.gap_s, sc.gap_tokens) / sc.gap_tokens.sum())

    @property
    def itl_p50_s(self) -> float:
        """The median inter-token gap over every token of the run."""
        sc = self.schedule
        cum = np.cumsum(sc.gap_tokens)
        return float(sc.gap_s[int(np.searchsorted(cum, 0.5 * cum[-1]))])

    @property
    def makespan_s(self) -> float:
        """First arrival to last token (the request's latency outside the steps included)."""
        return float(np.max(self.schedule.last_token_s)) + self.request_s

    @property
    def achieved_requests_per_s(self) -> float:
        """n / makespan: the run's request throughput."""
        return len(self.schedule.arrival_s) / self.makespan_s

    @property
    def output_tokens_per_s(self) -> float:
        """n · E[O] / makespan (benchmark_serving: total output tokens over the run's duration)."""
        return len(self.schedule.arrival_s) * self.output_tokens_mean / self.makespan_s


def overload_run(model, hardware, requests: int, requests_per_s: float, prompt_tokens, output_tokens,
                 deployment: Deployment | None = None, chunk_tokens: int | None = None,
                 max_batch_size: int | None = None) -> OverloadRun:
    """A finite run of n = `requests` requests at λ = `requests_per_s` stepped through the serving model's scheduler
    (`overload_schedule`) with its step times at each batch (`Curves`: t0(B), the prefill pass X = E[X(S)] or the
    chunked step tC(B), or for whole prompts in the decode step X and δ(B) at the mean prompt, the engine's CPU time
    per step included; `Curves.max_batch_size_fits` slots), every request
    at the mean lengths E[S], E[O]. The step-level counterpart of `finite_overload`: nothing is taken from the
    capacity point, so it also holds for a run that never fills the batch (n ≤ c), for the fill and the drain, and
    for a run that is prefill-bound (prompts arriving faster than one prefill pass, 1/λ < X: they queue for the
    prefill while the decode batch waits, the steady state's t̄ = t0/(1 − λa) past λa = 1). For n ≫ c it meets
    `finite_overload` (the batch full, slots freeing at μ).

    Arrivals are at i/λ, the mean arrival times of a Poisson stream; its spread is not modelled. Not modelled
    either: the overlap scheduler's extra step before a new prompt (`EngineProfile.overlap_scheduler`), several
    prompts in one prefill pass where prefill runs alone (as the steady state), pipeline and expert parallelism
    (refused).
    """
    check_requests(requests)
    check_positive_int(max_batch_size, "max_batch_size")
    model, hw = load_pair(model, hardware)
    dep = deployment or Deployment()
    require_tp_replica(dep, "a stepped run is", "use finite_overload")
    traffic = check_traffic(model, requests_per_s, prompt_tokens, output_tokens, chunk_tokens)
    cv = curves_for(model, hw, dep, traffic, chunk_tokens, max_batch_size)
    cap = float(cv.capacity[0])
    if not cv.fits[0] or cap <= 0:
        raise SpecError("deployment", unfit_reason(cv))
    st = cv.state(np.array([stable_side(cap)]))
    s, o = traffic.prompt_tokens.mean_tokens, traffic.output_tokens.mean_tokens
    eng = cv.rd.engine
    pool = None
    if eng is not None and eng.admission == "future_kv":  # admitted by the pool's future peak; the cap is the engine's own
        pool = float(cv.kv_pool_tokens(st)[0])
        slots = int(min(cv.cap[0], max(1.0, math.floor(pool / (s + 1)))))
    else:
        slots = int(cv.max_batch_size_fits(st)[0])
    grid, t0 = cv.grid, cv.t0[0]

    def t0_at(b):
        return np.interp(b, grid, t0)

    if cv.delta is not None:  # whole prompts in the decode step, the weights read once a step (δ at the mean prompt)
        delta = (cv.delta[0] * cv.s_p).sum(axis=-1)
        sched = overload_schedule(requests, requests_per_s, max(2, round(o)), slots, t0_at,
                                  prefill_s=float((cv.x_pre[0] * cv.s_p).sum()), kv_pool_tokens=pool, prompt_tokens=s,
                                  chunk_tokens=float(cv.step_tokens[0]), prompt_step_s=lambda b: np.interp(b, grid, delta))
    elif cv.chunk is None:
        sched = overload_schedule(requests, requests_per_s, max(2, round(o)), slots, t0_at,
                                  prefill_s=float((cv.x_pre[0] * cv.s_p).sum()), kv_pool_tokens=pool,
                                  prompt_tokens=None if pool is None else s)
    else:
        tc = cv.tc[0]
        sched = overload_schedule(requests, requests_per_s, max(2, round(o)), slots, t0_at, prompt_tokens=s,
                                  chunk_tokens=float(cv.chunk[0]), chunk_step_s=lambda b: np.interp(b, grid, tc),
                                  kv_pool_tokens=pool)
    return OverloadRun(schedule=sched, request_s=float((cv.request_s * cv.s_p).sum()), output_tokens_mean=o,
                       capacity_requests_per_s=cap, max_running=slots)


def run_above_capacity(model, hardware, requests: int, requests_per_s: float, prompt_tokens, output_tokens,
                       deployment: Deployment | None = None, chunk_tokens: int | None = None,
                       max_batch_size: int | None = None) -> "OverloadRun | FiniteOverload":
    """A finite run of n = `requests` offered above the replica's capacity, by the model that describes it: stepped
    through the scheduler (`overload_run`) on a tp replica, the fluid D/D/c queue on the saturated steady state
    (`finite_overload`) where pipeline or expert parallelism rules the stepped run out. Both records answer the same
    figures: `ttft_mean_s`, `ttft_p50_s` / `_p90_s` / `_p99_s`, `itl_mean_s`, `e2e_mean_s`, `e2e_p50_s`, `makespan_s`,
    `achieved_requests_per_s`, `output_tokens_per_s` (the stepped run also `itl_p50_s`)."""
    dep = deployment or Deployment()
    run = overload_run if dep.is_tp_replica else finite_overload
    return run(model, hardware, requests, requests_per_s, prompt_tokens, output_tokens, dep, chunk_tokens, max_batch_size)


# ------------------------------------------------------------ synchronized waves (closed loop, fixed lengths)
@dataclass(frozen=True)
class WaveSchedule:
    """The engine steps of one synchronized wave (`wave_schedule`), one entry per step j = 1..J, and per prompt i
    the step that produces its first token and the step that produces its last. Tokens, sequences, step counts."""

    prefill_tokens: np.ndarray  # (J,) prompt tokens the step prefills
    prefill_prompts: np.ndarray  # (J,) prompts the step touches (whole or a chunk)
    decode_rows: np.ndarray  # (J,) sequences the step decodes one token for
    start_step: np.ndarray  # (N,) the step that begins prompt i's prefill (1-based)
    first_step: np.ndarray  # (N,) k_i: the step whose end brings prompt i's first token (1-based)
    last_step: np.ndarray  # (N,) the step whose end brings its last token

    @property
    def prefill_steps(self) -> int:
        """k: the steps until the last prompt of the wave has its first token."""
        return int(self.first_step.max())


def wave_schedule(clients: int, prompt_tokens: int, output_tokens: int, budget_tokens: int, chunked: bool,
                  multi_prompt: bool, mixed: bool) -> WaveSchedule:
    """The steps an engine runs for a wave of `clients` requests that arrive together, each a prompt of S =
    `prompt_tokens` and an output of O = `output_tokens` tokens, served in arrival order.

    Each step has a budget of C = `budget_tokens` tokens. When the engine `mixed` prefill and decode in one
    step, the sequences already decoding take one token each of the budget first and prompts fill the rest;
    otherwise a step is a prefill step (the whole budget for prompts) whenever prompts wait, and decode runs
    only once none wait. `chunked`: a prompt may be split across steps at the budget; otherwise it enters a
    step whole (the first prompt of a step even when it is longer than the budget). `multi_prompt`: a step may
    take several prompts. Prompt i's first token comes out of the step that finishes its prefill, k_i; it
    then decodes O - 1 tokens: in the steps k_i + 1 .. k_i + O - 1 when mixed, and in the O - 1 decode steps
    after the last prefill step k (k + 1 .. k + O - 1) when not.

    Worked example (C = 8192, S = 3200, multi-prompt, chunked, not mixed, N = 4): 12,800 prompt tokens take
    two steps (8192 + 4608 tokens); prompts 1 and 2 finish in step 1, 3 (its last 1792 tokens) and 4 in step 2.
    """
    n, s, o, c = int(clients), int(prompt_tokens), int(output_tokens), int(budget_tokens)
    if min(n, s, o, c) < 1:
        raise SpecError("clients", f"a wave needs positive clients, lengths and budget, got N={n}, S={s}, O={o}, C={c}")
    remaining = np.full(n, s, dtype=np.int64)
    first = np.zeros(n, dtype=np.int64)
    start = np.zeros(n, dtype=np.int64)
    tokens, prompts, rows = [], [], []
    # done[j]: the prompts whose first token came out of steps 1..j; prompt i decodes in steps first_i + 1 ..
    # first_i + O - 1, so step j decodes done[j - 1] - done[max(j - O, 0)] sequences
    done = [0]
    nxt, j = 0, 0
    while nxt < n:
        j += 1
        d = done[j - 1] - done[max(j - o, 0)] if mixed else 0
        room = c - d
        t = q = 0
        while nxt < n and room > 0:
            take = min(int(remaining[nxt]), room) if chunked else int(remaining[nxt])
            if not chunked and take > room and q > 0:
                break
            if remaining[nxt] == s:
                start[nxt] = j
            remaining[nxt] -= take
            room -= take
            t += take
            q += 1
            if remaining[nxt] == 0:
                first[nxt] = j
                nxt += 1
            if not multi_prompt:
                break
        tokens.append(t)
        prompts.append(q)
        rows.append(d)
        done.append(nxt)
    k = j
    last = first + o - 1 if mixed else np.full(n, k + o - 1, dtype=np.int64)
    steps = np.arange(k + 1, int(last.max()) + 1)
    if mixed:  # the decode tail: prompt i decodes in steps k_i + 1 .. k_i + O - 1 (every prompt done by step k)
        done_at = np.asarray(done, dtype=np.int64)
        tail = n - done_at[np.minimum(np.maximum(steps - o, 0), k)]
    else:
        tail = np.full(len(steps), n)
    return WaveSchedule(prefill_tokens=np.concatenate([np.array(tokens, float), np.zeros(len(steps))]),
                        prefill_prompts=np.concatenate([np.array(prompts, float), np.zeros(len(steps))]),
                        decode_rows=np.concatenate([np.array(rows, float), tail.astype(float)]),
                        start_step=start, first_step=first, last_step=last)


@dataclass(frozen=True)
class Wave:
    """One synchronized wave of a closed loop with fixed lengths (`wave`): its schedule, the time of every step,
    and per prompt its TTFT and TPOT. Seconds, requests/s."""

    schedule: WaveSchedule
    step_s: np.ndarray  # (J,) the time of each step
    request_s: float  # latency of a request outside the steps (API, tokenizing), on every TTFT
    ttft_s: np.ndarray  # (N,) request_s + the steps up to and including k_i
    tpot_s: np.ndarray  # (N,) (steps k_i + 1 .. last_i) / (O - 1)
    cycle_s: float  # request_s + every step of the wave: the time between two waves
    decode_batch: int  # N, the sequences that decode together

    @property
    def requests_per_s(self) -> float:
        """N requests per cycle (the response-time law with every client busy the whole cycle)."""
        return self.decode_batch / self.cycle_s


def wave_step_times(model: ModelSpec, rd: ResolvedDeployment, hw: HardwareProfile, schedule: WaveSchedule,
                    prompt_tokens: float, decode_context_tokens: float, rank_rows: int = 1) -> np.ndarray:
    """The time of each step of `schedule` on one GPU of a tp replica (pp = ep = 1), from the operator table.

    A step prefilling T tokens of q prompts and decoding d sequences runs the GEMMs, norms and all-reduces
    over d + T tokens (the LM head over d + q rows), decode attention for d sequences at the wave's mean
    decode context c̄ = S + O/2 (the module's t0), and T times the attention per prompt token attn(S)/S of a
    whole prompt (the module's tC), plus the engine's CPU time h(d + q). Steps with prompt tokens run
    eagerly; decode-only steps replay a CUDA graph up to the engine's captured batch (as `Curves`).
    A pure prefill step (d = 0) is a prefill pass (MLA not absorbed); a mixed one runs absorbed (as tC).

    Under attention data parallelism over r = tp ranks (`Deployment.attention_dp`) the schedule is the busiest rank's
    and `rank_rows` ranks hold requests: a step's GEMMs, MoE and collectives run over `rank_rows` times its rows (the
    gather keeps the real rows; each rank's attention-side GEMMs at their mean), a decode step over r times its
    sequences (every rank replays the busiest rank's captured batch, `ops.attention_dp_rows`), and a prompt token's
    attention is one rank's (a prefill pass of one prompt a rank). `rank_rows` is 1 on a tp replica.
    """
    tp = rd.dep.tp
    ranks = rd.dep.attention_ranks if rd.dep.attention_dp else 1  # each rank runs the schedule's rows
    eng = rd.engine
    ceil = replica_ceilings([hw], rd)[0]  # as `Curves`: a tp group wider than the NVLink domain on the scale-out network
    dceil = decode_ceilings(ceil)
    T, q, d = schedule.prefill_tokens, schedule.prefill_prompts, schedule.decode_rows
    out = np.zeros(len(T))
    one = np.ones((1, 1))  # (devices, points) arrays, as the stacked ceilings expect
    pre_attn, _, _ = _timed(O.forward_ops(model, rd, ranks * one, float(prompt_tokens) * one, 0, tp, mla_absorbed=False), ceil, tp)
    attn_per_prompt_token = float(pre_attn.ravel()[0]) / prompt_tokens
    ds = np.unique(d[d > 0])
    dec_attn = {}
    if len(ds):
        ops = O.forward_ops(model, rd, ranks * ds[None, :], 1, decode_context_tokens - 1, tp, mla_absorbed=True)
        g_attn, g_lin, _ = _timed(ops, dceil, tp)
        e_attn, e_lin, _ = _timed(ops, ceil, tp)
        graph = ds <= (eng.cuda_graph_max_batch if eng is not None else np.inf)
        da, dl = np.where(graph, g_attn.ravel(), e_attn.ravel()), np.where(graph, g_lin.ravel(), e_lin.ravel())
        dec_attn = dict(zip(ds, e_attn.ravel()))
        only = T == 0
        idx = np.searchsorted(ds, d[only])
        out[only] = (da + dl)[idx]
    for absorbed, pick in ((False, (T > 0) & (d == 0)), (True, (T > 0) & (d > 0))):
        if not pick.any():
            continue
        rows = d[pick] + q[pick]
        ops = O.forward_ops(model, rd, rank_rows * rows[None, :], ((d[pick] + T[pick]) / rows)[None, :], 0, tp, mla_absorbed=absorbed)
        _, lin, _ = _timed(ops, ceil, tp)
        out[pick] = lin.ravel() + T[pick] * attn_per_prompt_token + np.array([dec_attn.get(x, 0.0) for x in d[pick]])
    if eng is not None:
        out = out + eng.step_s(d + q)
    return out


def wave_batch_limit(cv: Curves) -> int:
    """The most sequences the replica of `cv` (one device row) holds in one decode batch: memory at the traffic's
    context and the engine's cap (`Curves.max_batch_size_fits`); 0 when batch 1 does not fit."""
    if not cv.fits[0]:
        return 0
    return int(cv.max_batch_size_fits(cv.state(np.array([max(float(cv.capacity[0]), 1e-12) * 1e-6])))[0])


def wave(model, hardware, concurrency: int, prompt_tokens: int, output_tokens: int, deployment: Deployment | None = None,
         chunk_tokens: int | None = None) -> Wave:
    """One synchronized wave of a closed loop of N = `concurrency` clients with fixed prompt and output lengths.

    A benchmark client at fixed concurrency with fixed lengths (`vllm bench serve --max-concurrency N` or SGLang's
    bench_serving with `--random-range-ratio 1`) starts N requests together; when none of them is delayed
    behind another, they finish together and the next N start together: the requests arrive in waves of N,
    not as a Poisson stream. The engine's scheduler (`wave_schedule`: token budget C, several prompts per
    step where the engine allows, prefill mixed with decode in one step where it does, `EngineProfile.
    mixed_prefill_decode`) sets the steps; the operator table times each (`wave_step_times`). Then

        TTFT_i = r + Σ_{j ≤ k_i} t_j,    TPOT_i = Σ_{k_i < j ≤ last_i} t_j / (O - 1),    cycle = r + Σ_j t_j,

    r the request's latency outside the steps (`EngineProfile.request_s`); the closed loop serves N requests
    per cycle. The engine is idle when a wave arrives (the last one has just finished), so no step is waited
    out. Worked example (not mixed, C = 8192, S = 3200, N = 4, two prefill steps of 4 s and 3 s, then O - 1 =
    9 decode steps of 0.1 s, r = 0): TTFT = 4, 4, 7, 7 s, mean 5.5 s; TPOT = (3 + 0.9)/9, (3 + 0.9)/9, 0.1,
    0.1 s; cycle 7.9 s, 4/7.9 requests/s.

    Exact for an engine that does not mix (every prompt of the wave is prefilled before any decodes, so all
    finish in the same step). A mixing engine finishes prompt i k_i steps into the wave, so its client
    returns a little earlier: waves of a long run spread by up to k steps. Not modelled: pipeline and expert
    parallelism (refused), a wave larger than the batch memory holds (`closed_loop` models that one).

    Attention data parallelism over r ranks (`Deployment.attention_dp`): the requests are dealt to the ranks in turn,
    so ⌈N/r⌉ go to the busiest (`rank_shares`); each rank's scheduler runs the schedule of its own share with its own
    budget, and every step is collective, so the replica's steps are the busiest rank's, timed with every rank's rows
    (`wave_step_times` with `rank_rows`). A rank with one request fewer finishes its prefill a step sooner and its
    requests' TTFT and TPOT are read from its own schedule on the same steps. Worked example (r = 8, N = 4): four
    ranks hold one request each, four idle; one prefill step of 3,200 tokens a rank (4 · 3,200 rows into the MoE),
    then decode steps of one sequence a rank, padded to 8 rows (`ops.attention_dp_rows`).
    """
    model, hw = load_pair(model, hardware)
    dep = deployment or Deployment()
    require_tp_replica(dep, "waves are", "leave synchronized unset for the Poisson closed loop", field="synchronized",
                       attention_dp=True)
    check_concurrency(concurrency)
    n = int(round(concurrency))
    traffic = Traffic.of(None, prompt_tokens, output_tokens, concurrency=n, synchronized=True)
    check_chunk_tokens(model, chunk_tokens)
    s, o = traffic.prompt_tokens.tokens, traffic.output_tokens.tokens
    cv = curves_for(model, hw, dep, traffic, chunk_tokens)  # checked, on the engine's kernel tables
    held = wave_batch_limit(cv)
    if n > held:
        raise SpecError("concurrency", f"a wave of {n} requests exceeds the {held} sequences the replica holds at "
                                       f"{s:g} + {o:g} tokens: use closed_loop (the surplus waits for a slot)")
    return _wave_on(cv, model, n, s, o, chunk_tokens)


def _wave_on(cv: Curves, model: ModelSpec, n: int, s: float, o: float, chunk_tokens: int | None) -> Wave:
    """`wave` of n requests on the replica of `cv` (one device row, already checked to hold them); over attention
    data-parallel ranks, the busiest rank's steps with every rank's requests (`wave`'s docstring)."""
    shares = rank_shares(n, cv.ranks)
    scheds = [(_wave_schedule_on(cv, k, s, o, chunk_tokens), count) for k, count in shares]
    (busiest, request_s), _ = scheds[0]
    # per step: the busiest rank's tokens, prompts and rows; per request: each rank's own first and last steps
    sched = WaveSchedule(busiest.prefill_tokens, busiest.prefill_prompts, busiest.decode_rows,
                         *(np.concatenate([np.tile(getattr(sc, f), count) for (sc, _), count in scheds])
                           for f in ("start_step", "first_step", "last_step")))
    t = wave_step_times(model, cv.rd, cv.hws[0], sched, s, wave_context_tokens(s, o), rank_rows=sum(c for _, c in shares))
    return wave_of(sched, t, request_s, int(o))


def rank_shares(clients: int, ranks: int) -> list[tuple[int, int]]:
    """[(requests, ranks holding that many), ...], busiest first, of `clients` requests dealt to `ranks` attention
    data-parallel ranks in turn (SGLang's DataParallelController, round robin); ranks left without one are left out.
    Worked numbers: 12 over 8 ranks -> [(2, 4), (1, 4)]; 4 over 8 -> [(1, 4)]; 16 over 8 -> [(2, 8)]; any over 1 rank
    -> [(clients, 1)]."""
    base, extra = divmod(int(clients), int(ranks))
    shares = [(base + 1, extra)] if extra else []
    return shares + ([(base, ranks - extra)] if base else [])


def wave_context_tokens(s: float, o: float) -> float:
    """The mean decode context of a wave's steps: the module docstring's c̄ = S + E[O(O-1)]/(2E[O-1]) for a fixed
    O, S + O/2."""
    return s + o / 2


def _wave_schedule_on(cv: Curves, n: int, s: float, o: float, chunk_tokens: int | None) -> tuple[WaveSchedule, float]:
    """The steps of a wave of n requests on the engine of `cv` (`wave_schedule` with its token budget, chunking,
    multi-prompt and mixing), and a request's latency outside the steps."""
    rd, hw = cv.rd, cv.hws[0]
    eng = rd.engine
    if eng is not None:
        budget = int(chunk_tokens or engine_limits(rd, [hw])[1][0])
        chunked, multi, mixed = eng.chunked_prefill or chunk_tokens is not None, eng.multi_prompt_prefill, eng.mixed_prefill_decode
    else:  # the bare roofline: whole prompts one per pass, or chunks of `chunk_tokens` mixed with decode (module docstring)
        budget, chunked, multi, mixed = int(chunk_tokens or s), chunk_tokens is not None, False, chunk_tokens is not None
    return wave_schedule(n, int(s), int(o), budget, chunked, multi, mixed), float(eng.request_s(s)) if eng is not None else 0.0


@dataclass(frozen=True)
class OfflineRun:
    """An offline run of n fixed-length requests in synchronized waves (`offline_run`): the requests of each wave
    in order (⌊n / w⌋ waves of w, then one of n mod w) and the cycle of each, seconds; wall_s = Σ cycles (inf,
    with no waves, when batch 1 does not fit)."""

    requests: int  # n
    output_tokens: float  # O, every request's
    wave_requests: tuple[int, ...]  # the requests of each wave, in order
    wave_cycle_s: tuple[float, ...]  # each wave's cycle: request latency + every step of the wave
    wall_s: float  # first submission to last token: Σ wave_cycle_s

    @property
    def requests_per_s(self) -> float:
        """n / T (trtllm-bench's request throughput)."""
        return self.requests / self.wall_s

    @property
    def output_tokens_per_s(self) -> float:
        """n · O / T (trtllm-bench's output throughput)."""
        return self.requests * self.output_tokens / self.wall_s


def offline_run_s(model, hardware, requests: int, prompt_tokens: int, output_tokens: int,
                  deployment: Deployment | None = None, chunk_tokens: int | None = None,
                  max_batch_size: int | None = None) -> float:
    """The wall time of `offline_run` (seconds; inf when batch 1 does not fit)."""
    return offline_run(model, hardware, requests, prompt_tokens, output_tokens, deployment, chunk_tokens, max_batch_size).wall_s


def offline_run(model, hardware, requests: int, prompt_tokens: int, output_tokens: int,
                deployment: Deployment | None = None, chunk_tokens: int | None = None,
                max_batch_size: int | None = None) -> OfflineRun:
    """The waves and wall time of an offline run of `requests` requests with fixed lengths, all submitted at once to one tp
    replica (`trtllm-bench throughput`, `vllm bench throughput` on a synthetic fixed-length dataset); no waves and
    an infinite wall time when batch 1 does not fit.

    The replica admits w requests, the most its memory holds at S + O tokens, its engine's max_num_seqs and
    `max_batch_size` allow (`wave_batch_limit`). Requests of one length admitted together finish together, and
    the next w are admitted together: the run is ⌊n / w⌋ synchronized waves of w and one of n mod w, each on the
    engine's schedule (`wave`: its token budget, whole or chunked prompts, prefill mixed with decode or not):

        T = ⌊n / w⌋ · cycle(w) + cycle(n mod w),    the run's output tokens/s = n · O / T

    Not the steady state λ_max: a run of n requests ends with a partial wave, and it starts idle. Worked
    number: n = 1000, w = 384 are two waves of 384 and one of 232; where a step costs about the same at 232
    as at 384 sequences (decode reading the weights), T ≈ 3 · cycle(384): 333 requests a cycle where an
    endless stream at 384 gives 384. A mixing engine's waves spread by up to the steps of their prefill
    (`wave`), so this holds best when a wave prefills in few steps. pp = ep = 1 only (as `wave`).
    """
    model, hw = load_pair(model, hardware)
    dep = deployment or Deployment()
    require_tp_replica(dep, "offline waves are", "use capacity_requests_per_s")
    n = check_requests(requests)
    check_positive_int(max_batch_size, "max_batch_size")
    traffic = Traffic.of(None, prompt_tokens, output_tokens)
    s, o = fixed_lengths(traffic, "an offline run in waves", "use capacity_requests_per_s")
    check_chunk_tokens(model, chunk_tokens)
    cv = curves_for(model, hw, dep, traffic, chunk_tokens, max_batch_size)
    w = min(n, wave_batch_limit(cv))
    if w < 1:
        return OfflineRun(requests=n, output_tokens=o, wave_requests=(), wave_cycle_s=(), wall_s=math.inf)
    full, rest = divmod(n, w)
    waves = [_wave_schedule_on(cv, k, s, o, chunk_tokens) for k in ((w, rest) if rest else (w,))]
    # the steps of both waves timed in one pass over the operator table (a step's time depends on its own tokens only)
    steps = WaveSchedule(*(np.concatenate([getattr(sc, f) for sc, _ in waves])
                           for f in ("prefill_tokens", "prefill_prompts", "decode_rows", "start_step", "first_step", "last_step")))
    t = wave_step_times(model, cv.rd, cv.hws[0], steps, s, wave_context_tokens(s, o))
    cycles = [r + float(tk.sum()) for (_, r), tk in zip(waves, np.split(t, [len(waves[0][0].prefill_tokens)]))]
    return OfflineRun(requests=n, output_tokens=o, wave_requests=(w,) * full + ((rest,) if rest else ()),
                      wave_cycle_s=(cycles[0],) * full + ((cycles[1],) if rest else ()),
                      wall_s=full * cycles[0] + (cycles[1] if rest else 0.0))


def wave_of(schedule: WaveSchedule, step_s, request_s: float, output_tokens: int) -> Wave:
    """The latencies of a wave from its schedule and step times (`wave`'s formulas): TTFT_i = r + Σ_{j ≤ k_i} t_j,
    TPOT_i = Σ_{k_i < j ≤ last_i} t_j / (O - 1), cycle = r + Σ_j t_j."""
    t = np.asarray(step_s, float)
    if t.shape != schedule.prefill_tokens.shape:
        raise SpecError("step_s", f"needs one time per step of the schedule ({len(schedule.prefill_tokens)}), got shape {t.shape}")
    done = np.concatenate([[0.0], np.cumsum(t)])
    ttft = request_s + done[schedule.first_step]
    tpot = (done[schedule.last_step] - done[schedule.first_step]) / (output_tokens - 1)
    return Wave(schedule=schedule, step_s=t, request_s=request_s, ttft_s=ttft, tpot_s=tpot, cycle_s=request_s + float(done[-1]),
                decode_batch=len(schedule.first_step))


def _wave_point(cv: Curves, model: ModelSpec, hw: HardwareProfile, dep: Deployment, traffic: Traffic, w: Wave) -> ServingPoint:
    """The ServingPoint of a synchronized closed loop: means and percentiles over the wave's N requests (`wave`)."""
    sc = w.schedule
    n = w.decode_batch
    done = np.concatenate([[0.0], np.cumsum(w.step_s)])
    prefilling = sc.prefill_tokens > 0
    decode_only = ~prefilling
    mixed = prefilling & (sc.decode_rows > 0)
    lam = w.requests_per_s
    o = traffic.output_tokens.mean_tokens
    gaps = [np.diff(done[np.r_[sc.first_step[i], np.flatnonzero(sc.decode_rows > 0) + 1]]) for i in range(n)]
    itl_max = max(float(np.max(g[g > 0])) if np.any(g > 0) else 0.0 for g in gaps)
    tokens = lam * o
    hour = hw.price_usd_per_gpu_hour * cv.gpus
    ttft = {"ttft_wait_mean_s": float(np.mean(done[sc.start_step - 1])), "ttft_mean_s": float(np.mean(w.ttft_s)),
            **{f"ttft_p{100 * q:g}_s": float(np.quantile(w.ttft_s, q)) for q in TTFT_PERCENTILES}}
    tpot = float(np.mean(w.tpot_s))
    banded = {**{k: (v, "ttft_serving") for k, v in ttft.items() if k != "ttft_wait_mean_s"}, "tpot_s": (tpot, "tpot_serving"),
              "output_tokens_per_s": (tokens, "throughput_serving")}
    return ServingPoint(
        model=model.name, hardware=hw.name, deployment=dep, prompt_tokens=traffic.prompt_tokens, output_tokens=traffic.output_tokens,
        chunk_tokens=None if cv.chunk is None else int(cv.chunk[0]), gpus_per_replica=cv.gpus, requests_per_s=lam,
        capacity_requests_per_s=float(cv.capacity[0]), stable=True, reason="", batch_size=float(n),
        max_batch_size_fits=int(cv.max_batch_size_fits(cv.state(np.array([lam])))[0]),
        decode_step_s=float(np.mean(w.step_s[decode_only])) if decode_only.any() else math.nan,
        chunked_step_s=float(np.mean(w.step_s[mixed])) if mixed.any() else math.nan, tpot_s=tpot, itl_max_s=itl_max,
        prefill_utilization=float(w.step_s[prefilling].sum() / w.cycle_s), **ttft,
        output_tokens_per_s=tokens, output_tokens_per_s_per_gpu=tokens / cv.gpus,
        memory_required_bytes_per_gpu=float(np.interp(n, cv.grid, cv.memory_required[0])),
        memory_available_bytes_per_gpu=float(hw.memory_bytes), usd_per_hour=hour,
        usd_per_million_output_tokens=usd_per_million_tokens(hour, tokens),
        notes=(*cv.notes, f"synchronized waves of {n} requests: {sc.prefill_steps} prefill steps, then decode"),
        bands=bands_for(banded, hw, cv.rd.weights.dtype.name, cv.rd.act.name),
    )
