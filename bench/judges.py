"""Judge benchmark on the default model. Prints figures measured in this one run.

    python bench/judges.py [--threads N] [--items 16] [--pairwise-items 8] [--max-new-tokens 64]

1. The log-prob judge on ``--items`` pairs: one batched call (every item, both orders) vs one item at a time.
   The target is a speed-up of at least 3x.
2. The MT-Bench pairwise judge on ``--pairwise-items`` pairs (both orders, greedy, ``--max-new-tokens``):
   items per second and generated tokens per second, batched, and the share of verdicts that parsed.

Reference figures, 2-core shared CPU, 1 torch thread, bf16: log-prob judge 16 items batched 11.8 s vs one at a
time 13.2 s, a speed-up of 1.1x, short of the 3x target. The log-prob judge is prompt processing only (~165
tokens per conversation, no decoding), which on a CPU is compute-bound: a batch does the same FLOPs as the
calls one by one and saves only per-call overhead, which is small here. (Reading only the last position's logits,
``logits_to_keep=1`` in the backend, moved the ratio from 1.08 to 1.19.) The 3x is for an accelerator, where
one short sequence leaves the device idle. Pairwise judge, 8 items, 64 new tokens: 0.38 items/s, 32 generated
tok/s, 0/8 verdicts parsed (SmolLM2-135M rarely writes [[A]]/[[B]]/[[C]]: those are failed verdicts).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studio import default_model  # noqa: E402
from studio.backends import GenParams  # noqa: E402
from studio.backends.transformers_backend import TransformersBackend  # noqa: E402
from studio.judges import JudgeItem, make_judge  # noqa: E402
from studio.judges.pairwise import pairwise_conversation  # noqa: E402
from studio.settings import Settings  # noqa: E402

PAIRS = [
    ("What is the capital of France?", "Paris.", "The capital of France is Paris, on the Seine."),
    ("Name a primary colour.", "Red.", "Blue is a primary colour, like red and yellow."),
    ("What is 7 times 8?", "56.", "7 times 8 is 54."),
    ("Why is the sky blue?", "Rayleigh scattering of sunlight.", "Because the sea reflects onto it."),
    ("Give a synonym for happy.", "Joyful.", "Sad."),
    ("What do bees make?", "Honey and wax.", "Bees make honey."),
    ("How many legs does a spider have?", "Eight.", "Six legs, like all insects."),
    ("What is H2O?", "Water.", "H2O is the chemical formula of water: two hydrogen atoms, one oxygen."),
]


def items(n: int) -> list[JudgeItem]:
    return [JudgeItem.pair(*PAIRS[i % len(PAIRS)], key=i) for i in range(n)]


def timed(fn):  # -> (result, seconds)
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def bench_logprob(backend: TransformersBackend, n: int, repeats: int) -> None:
    judge = make_judge("logprob")
    its = items(n)
    judge.judge(its[:2], backend)  # warm-up
    batched = min(timed(lambda: judge.judge(its, backend))[1] for _ in range(repeats))
    alone = min(timed(lambda: [judge.judge([it], backend) for it in its])[1] for _ in range(repeats))
    print(
        f"log-prob judge, {n} items x 2 orders: batched {batched:.2f} s ({n / batched:.1f} items/s), "
        f"one at a time {alone:.2f} s ({n / alone:.1f} items/s): speed-up {alone / batched:.1f}x (target >= 3x)"
    )


def bench_pairwise(backend: TransformersBackend, n: int, max_new_tokens: int) -> None:
    judge = make_judge("pairwise", {"max_new_tokens": max_new_tokens})
    its = items(n)
    verdicts, dt = timed(lambda: judge.judge(its, backend))
    convs = [pairwise_conversation(it, o) for it in its for o in ("AB", "BA")]
    # the generated-token count, from one more identical (greedy) batch
    outs = backend.chat(convs, GenParams(max_new_tokens=max_new_tokens))
    tokens = sum(c.completion_tokens for c in outs)
    ok = sum(v.ok for v in verdicts)
    print(
        f"pairwise judge, {n} items x 2 orders, max_new_tokens={max_new_tokens}: {dt:.1f} s, "
        f"{n / dt:.2f} items/s, {tokens / dt:.0f} generated tok/s; {ok}/{n} verdicts parsed"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--items", type=int, default=16)
    ap.add_argument("--pairwise-items", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2, help="best of this many timings")
    args = ap.parse_args()
    settings = Settings.load(threads=args.threads or None)
    settings.apply_threads()
    model_dir = default_model.ensure_converted(settings.models_dir / default_model.NAME)
    backend = TransformersBackend(str(model_dir), model_name=default_model.NAME)
    print(
        f"model {default_model.NAME} on {backend.device}, dtype {backend.dtype}, threads {settings.threads or 'all'}"
    )
    bench_logprob(backend, args.items, args.repeats)
    bench_pairwise(backend, args.pairwise_items, args.max_new_tokens)


if __name__ == "__main__":
    main()
