"""`predict` of N scenarios never seen before, for counting instructions (valgrind's callgrind, which other jobs on the
machine do not disturb): the cost of a new scenario is (count at N = 300 − count at N = 100) / 200.

Run:  valgrind --tool=callgrind --callgrind-out-file=/dev/null python tests/benchmarks/fresh_predicts.py MODEL N
      (MODEL e.g. llama-3.1-70b or deepseek-v3, on h100-sxm as `bench_predictor.py` times it)

The scenarios are `bench_predictor.py`'s new ones (batch 1 + i mod 97, prompt 1,024 + 16 · (i mod 37) tokens, 256
output tokens: the first 300 are 300 distinct pairs, more batch sizes than the memo tables keep), after one repeated
scenario and 50 others (output 100, prompts from 3,000), so that what a process pays once (imports, the first lookups
of the profile and the spec) falls in both counts.
"""

from __future__ import annotations

import sys

import roofline as rl


def main(model_id: str, n: int) -> None:
    model, hw = rl.load_model(model_id), rl.load_hardware("h100-sxm")
    rl.predict(model, hw, rl.Workload(batch_size=8, prompt_tokens=2048, output_tokens=256))
    for i in range(50):
        rl.predict(model, hw, rl.Workload(batch_size=1 + i % 97, prompt_tokens=3000 + 16 * (i % 37), output_tokens=100))
    fresh = [rl.Workload(batch_size=1 + i % 97, prompt_tokens=1024 + 16 * (i % 37), output_tokens=256) for i in range(n)]
    for w in fresh:
        rl.predict(model, hw, w)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
