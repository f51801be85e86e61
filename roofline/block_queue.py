"""A paged-KV engine that admits what its block pool holds and holds the rest back: a finite closed loop of
fixed-length requests run step by step through its scheduler (LMDeploy TurboMind 0.1 - 0.2's
`SequenceManager::Materialize`), each step timed from the operator table (`serving.wave_step_times`).

Why: a benchmark of N clients, each sending R requests one after the other with a fixed prompt of S and a fixed
output of O tokens (LMDeploy's profile_generation.py: N threads, `--test-round` R), whose N sequences' KV does not
fit the engine's pool, still runs: the engine keeps some sequences waiting. `predict` of a static batch of N says
"does NOT fit" (required vs available bytes); this module is how such a run goes on that engine.

The scheduler, per step (TurboMind v0.1.0 `LlamaBatch::Initialize` -> `SequenceManager::Materialize`):

* every live request (running, waiting, or just arrived) in priority order, the priority its arrival order
  (`unique_id = request_count_++`: first come, first served);
* a request of context c (prompt plus tokens generated so far) needs ceil((c + 1) / b) blocks of b tokens
  (`CountRequiredBlocks` with step_length 1): blocks are taken as the sequence grows, not reserved for S + O;
* the blocks it lacks come from the free pool, then from blocks no live request owns, then by preempting the
  running or waiting requests of lowest priority (the latest arrivals), enough of them to cover the need; a
  preempted request's blocks are released and the oldest released blocks (its first ones) are reused, so its
  KV prefix is lost and it recomputes its whole context when it resumes; if even that does not cover the need,
  the request waits this step (a running one keeps its blocks);
* a step takes at most C input tokens (`max_context_token_num`, the engine's `max_num_batched_tokens`): one
  per decoding sequence, a prompt's (or a recomputed context's) tokens for the others, the last one chunked
  at the budget; a request past the budget waits this step;
* a request that has its O tokens leaves; its blocks are free at the next step, and its client's next request
  arrives for that step (the clients send again as soon as the last token comes back);
* the batch holds at most the engine's max_batch_size requests, running and waiting (`dequeue` takes the free
  slots); later ones wait in the request queue in arrival order.

A step prefilling T tokens of q prompts and decoding d sequences is timed as a wave's step
(`serving.wave_step_times`: the operator table at d + T tokens, decode attention at the mean context
S + O/2, `serving.wave_context_tokens`). Per request: its first-token latency (from the step it arrived for to
the end of the step that finished its prefill, the wait included) and the gaps between its tokens (a preempted
request's gap includes its wait and recompute). The run's output rate is N·R·O tokens over the time until the last token.

Worked example (`schedule`): N = 3 clients, R = 1, S = 100, O = 100, b = 128, a pool of 3 blocks, C = 1,000.
Each request needs ceil(101/128) = 1 block, so all three prefill in step 1 (300 tokens) and have their first
token. In step k >= 2 a context is 99 + k, so in step 29 (context 128) each needs a second block: request 1
takes request 3's (preempted, its KV lost), request 2 finds nothing left below it and waits with its block.
Request 1 decodes to its 100th token in step 100; in step 101 its two blocks are free: request 2 takes one and
decodes its last 72 tokens (steps 101-172); request 3, 128 tokens of context (100 + 28 generated) needing 2
blocks, waits until step 173, recomputes its 128 tokens there (its 29th token) and decodes to step 244.

Not modelled: the engine's output thread and the client's reading of the stream (a token is seen at the end of
its step), the partial reuse of a preempted request's blocks (all are taken as lost), clients whose requests
reach the engine steps apart (every one arrives for the step after its last token), prefix caching (none in
these releases).
"""

import math
from dataclasses import dataclass

import numpy as np

from .errors import SpecError
from .parallelism import device_kv_pool_bytes, engine_limits_on, kv_bytes_per_gpu
from .serving import (
    Traffic,
    WaveSchedule,
    check_positive_int,
    check_requests,
    curves_for,
    fixed_lengths,
    load_pair,
    require_tp_replica,
    wave_context_tokens,
    wave_step_times,
)
from .workload import Deployment


@dataclass(frozen=True)
class BlockSchedule:
    """The steps a paged-KV scheduler runs for a finite closed loop (`schedule`): per step j = 1..J the prompt
    (or recomputed) tokens, the sequences they belong to and the sequences decoding one token; per request, in
    arrival order, the step it arrived for, the step that gave its first token and the steps of its later
    tokens. Steps, tokens, counts."""

    prefill_tokens: np.ndarray  # (J,)
    prefill_prompts: np.ndarray  # (J,)
    decode_rows: np.ndarray  # (J,)
    arrival_step: np.ndarray  # (M,) 1-based: the first step the request could join
    first_step: np.ndarray  # (M,) the step whose end brings its first token
    token_steps: tuple[np.ndarray, ...]  # M arrays: the steps of its tokens 2..O
    preemptions: int  # requests preempted (their KV lost) over the run

    @property
    def steps(self) -> int:
        return len(self.prefill_tokens)


class _Request:
    __slots__ = ("prio", "client", "context", "cached", "blocks", "generated", "arrival", "first", "tokens")

    def __init__(self, prio: int, client: int, prompt: int, arrival: int):
        self.prio, self.client, self.arrival = prio, client, arrival
        self.context, self.cached, self.blocks, self.generated = prompt, 0, 0, 0
        self.first = 0
        self.tokens: list[int] = []


def schedule(clients: int, rounds: int, prompt_tokens: int, output_tokens: int, pool_blocks: int, block_tokens: int,
             budget_tokens: int, max_requests: int | None = None) -> BlockSchedule:
    """Run the scheduler of the module docstring for `clients` clients that each send `rounds` requests of
    `prompt_tokens` + `output_tokens`, on a pool of `pool_blocks` blocks of `block_tokens` tokens and a step
    budget of `budget_tokens` input tokens. `max_requests`: the requests the engine's batch state takes (TurboMind's
    max_batch_size: `dequeue` takes at most the free slots, running and waiting requests alike); the others wait in
    its request queue, in arrival order. Steps only: timing is `run`'s."""
    given = {"clients": clients, "rounds": rounds, "prompt_tokens": prompt_tokens, "output_tokens": output_tokens,
             "pool_blocks": pool_blocks, "block_tokens": block_tokens, "budget_tokens": budget_tokens}
    for field, value in given.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise SpecError(field, f"must be a positive integer, got {value!r}")
    n, r, s, o, pool, b, c = (int(x) for x in given.values())
    if -(-(s + o) // b) > pool:
        raise SpecError("pool_blocks", f"one request of {s} + {o} tokens needs {-(-(s + o) // b)} blocks of {b} tokens, "
                                       f"the pool has {pool}: it cannot run at all")
    check_positive_int(max_requests, "max_requests")
    cap = n if max_requests is None else int(max_requests)
    queued = [_Request(i, i, s, 1) for i in range(n)]  # the engine's request queue, arrival order
    live: list[_Request] = []
    done: list[_Request] = []
    sent = [1] * n
    free, orphan, nxt = pool, 0, n
    tokens_col, prompts_col, rows_col = [], [], []
    preempted = 0
    j = 0
    while live or queued:
        j += 1
        if len(live) < cap and queued:
            live, queued = live + queued[:cap - len(live)], queued[cap - len(live):]
        budget = c
        t = q = d = 0
        last = len(live)  # requests at or past `last` were preempted this step: they wait
        changed = False  # a block taken or released this step
        i = 0
        while i < last:
            x = live[i]
            if budget <= 0:
                i += 1
                continue
            need = max(0, -(-(x.context + 1) // b) - x.blocks)
            from_free = min(free, need)
            from_orphan = min(orphan, need - from_free)
            rest = need - from_free - from_orphan
            victims, released = [], 0
            v = last - 1
            while released < rest and v > i:  # the latest arrivals that hold blocks, running or waiting
                if live[v].blocks:
                    victims.append(v)
                    released += live[v].blocks
                v -= 1
            if released < rest:  # not enough even so: it waits this step (a running request keeps its blocks)
                i += 1
                continue
            free -= from_free
            orphan += released - from_orphan - rest
            for v in victims:
                live[v].blocks, live[v].cached = 0, 0
            preempted += len(victims)
            if victims:
                last = victims[-1]
            changed = changed or need > 0
            x.blocks += need
            inp = x.context - x.cached
            take = min(inp, budget)
            budget -= take
            x.cached += take
            if inp == 1:
                d += 1
            else:
                t += take
                q += 1
            if x.cached == x.context:  # the step ends with a new token
                x.generated += 1
                x.context += 1
                if x.generated == 1:
                    x.first = j
                else:
                    x.tokens.append(j)
            i += 1
        tokens_col.append(t)
        prompts_col.append(q)
        rows_col.append(d)
        still = []
        if t == 0 and not changed and all(x.generated < o for x in live):
            # a decode-only step that took no block repeats unchanged until a decoding request needs its next block
            # (context c reaching its blocks' h·b tokens) or has its O tokens: take those steps at once
            decoding = [x for x in live if x.generated >= 1 and x.cached == x.context - 1]
            m = min(min(x.blocks * b - x.context + 1, o - x.generated) for x in decoding) - 1 if decoding else 0
            if m > 0:
                for x in decoding:
                    x.tokens.extend(range(j + 1, j + m + 1))
                    x.cached += m
                    x.context += m
                    x.generated += m
                tokens_col.extend([0] * m)
                prompts_col.extend([0] * m)
                rows_col.extend([d] * m)
                j += m
        for x in live:
            if x.generated >= o:
                free += x.blocks
                done.append(x)
                if sent[x.client] < r:
                    sent[x.client] += 1
                    queued.append(_Request(nxt, x.client, s, j + 1))
                    nxt += 1
            else:
                still.append(x)
        live = sorted(still, key=lambda y: y.prio)
    done.sort(key=lambda y: y.prio)
    return BlockSchedule(prefill_tokens=np.array(tokens_col, float), prefill_prompts=np.array(prompts_col, float),
                         decode_rows=np.array(rows_col, float), arrival_step=np.array([x.arrival for x in done]),
                         first_step=np.array([x.first for x in done]),
                         token_steps=tuple(np.array(x.tokens, dtype=np.int64) for x in done), preemptions=preempted)


@dataclass(frozen=True)
class BlockQueueRun:
    """A finite closed loop run through `schedule` and timed (`run`): per request its first-token latency, every gap
    between two of its tokens, and the run's wall time. Seconds."""

    schedule: BlockSchedule
    pool_blocks: int
    step_s: np.ndarray  # (J,) the time of each step
    request_s: float  # latency of a request outside the steps, on every first token
    ttft_s: np.ndarray  # (M,) request_s + the steps from its arrival to its first token
    itl_s: np.ndarray  # every gap between two consecutive tokens of a request, all requests
    duration_s: float  # from the first request to the last token
    output_tokens: int  # O

    @property
    def output_tokens_per_s(self) -> float:
        """M·O tokens over the run's wall time."""
        return len(self.ttft_s) * self.output_tokens / self.duration_s


def kv_pool_blocks(model, hardware, deployment: Deployment) -> int:
    """The KV blocks of the deployment's engine on one GPU: an engine whose share sizes the KV pool alone
    (`memory_fraction_of: device_for_kv`, TurboMind 0.1 - 0.2.1's cache_max_entry_count below 1) has
    floor(f · M / block bytes) blocks (`BlockManager`: total · ratio / block_size; the pool f · M is
    `parallelism.device_kv_pool_bytes`), the block bytes those of `kv_block_tokens` tokens on one GPU (`parallelism.kv_bytes_per_gpu`). Worked number (Llama-2-7B, A100-80GB
    M = 85.9e9 B, f = 0.5, 128-token blocks of 128 · 2 · 32 · 32 · 128 · 2 B = 67.1e6 B): 640 blocks."""
    model, hw = load_pair(model, hardware)
    rd = deployment.resolved(model)
    eng = rd.engine
    if eng is None or eng.memory_fraction_of != "device_for_kv":
        raise SpecError("kv_blocks", "the pool is derived only for an engine whose memory share sizes the KV pool alone "
                                     "(memory_fraction_of: device_for_kv); give kv_blocks, the engine's block count")
    block_bytes = float(kv_bytes_per_gpu(model, rd, rd.dep.tp, eng.kv_block_tokens))
    return int(math.floor(float(device_kv_pool_bytes(rd, hw.memory_bytes)) / block_bytes))


def run(model, hardware, clients: int, rounds: int, prompt_tokens: int, output_tokens: int,
        deployment: Deployment | None = None, kv_blocks: int | None = None) -> BlockQueueRun:
    """`clients` clients each sending `rounds` requests of `prompt_tokens` + `output_tokens`, one after the other,
    to one tp replica of a paged-KV engine (`Deployment.engine`; module docstring): the scheduler's steps
    (`schedule`, with the engine's KV block, its token budget, its running-sequence cap as the requests its batch
    takes, and its pool: `kv_blocks` blocks where the run set them, else `kv_pool_blocks`) timed by
    `serving.wave_step_times`.

        TTFT_m = r + Σ_{a_m ≤ j ≤ k_m} t_j,   gaps of m = the sums of t_j between its consecutive tokens,
        wall time = Σ_j t_j (+ r before the first step),

    a_m the step request m arrived for, k_m the step of its first token, r the engine's request latency."""
    model, hw = load_pair(model, hardware)
    dep = deployment or Deployment()
    require_tp_replica(dep, "the block queue is")
    n = check_requests(clients, "clients")
    check_positive_int(kv_blocks, "kv_blocks")  # None: the engine's pool
    traffic = Traffic.of(None, prompt_tokens, output_tokens, concurrency=n)
    s, o = (int(x) for x in fixed_lengths(traffic, "the block queue", "it runs one prompt and one output length"))
    cv = curves_for(model, hw, dep, traffic, None)
    rd, hw = cv.rd, cv.hws[0]
    eng = rd.engine
    if eng is None:
        raise SpecError("engine", "the block queue needs a serving engine (Deployment.engine) for its KV block and step budget")
    if o < 2:
        raise SpecError("output_tokens", f"needs at least 2 output tokens (a gap between tokens), got {o}")
    pool = kv_pool_blocks(model, hw, dep) if kv_blocks is None else int(kv_blocks)
    seqs, budget = engine_limits_on(rd, hw)
    sc = schedule(n, rounds, s, o, pool, eng.kv_block_tokens, int(budget), max_requests=int(seqs))
    ws = WaveSchedule(prefill_tokens=sc.prefill_tokens, prefill_prompts=sc.prefill_prompts, decode_rows=sc.decode_rows,
                      start_step=sc.arrival_step, first_step=sc.first_step, last_step=sc.first_step)
    t = wave_step_times(model, rd, hw, ws, s, wave_context_tokens(s, o))
    r = float(eng.request_s(s))
    done = np.concatenate([[0.0], np.cumsum(t)])
    ttft = r + done[sc.first_step] - done[sc.arrival_step - 1]
    gaps = np.concatenate([np.diff(done[np.r_[k, steps]]) for k, steps in zip(sc.first_step, sc.token_steps)])
    return BlockQueueRun(schedule=sc, pool_blocks=pool, step_s=t, request_s=r, ttft_s=ttft, itl_s=gaps,
                         duration_s=r + float(done[-1]), output_tokens=o)
