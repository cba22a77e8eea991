"""Generation benchmark on the default model. Prints figures measured in this one run.

    python bench/generation.py [--threads N] [--max-new-tokens 64] [--skip-cold]

Reference figures measured on the 2-core CPU dev machine: batched/sequential wall-time ratio for 4
independent requests 0.42; bf16 decodes 1.94x faster than fp32; llama.cpp 169 tok/s vs HF bf16 51 tok/s.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studio import default_model  # noqa: E402
from studio.backends import GenParams  # noqa: E402
from studio.backends.transformers_backend import TransformersBackend  # noqa: E402
from studio.settings import Settings  # noqa: E402

PROMPTS = [
    "Explain why the sky is blue.",
    "Write a short poem about the sea.",
    "What are three uses of copper?",
    "Describe how a bicycle works.",
    "Why do leaves change colour in autumn?",
    "Give advice for learning a new language.",
    "What is photosynthesis?",
    "Summarise the plot of Cinderella.",
]


def conv(p: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": p}]


def timed(fn):  # -> (result, seconds)
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def toks_per_s(backend: TransformersBackend, n: int, params: GenParams) -> float:
    outs, dt = timed(lambda: backend.chat([conv(p) for p in PROMPTS[:n]], params))
    return sum(c.completion_tokens for c in outs) / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--skip-cold", action="store_true", help="skip the ~20 s GGUF conversion")
    args = ap.parse_args()
    settings = Settings.load(threads=args.threads or None)
    settings.apply_threads()
    # min_new_tokens-like fairness: fixed budget, greedy; rows that stop early still count their real tokens.
    params = GenParams(max_new_tokens=args.max_new_tokens)

    if not args.skip_cold:
        tmp = Path(tempfile.mkdtemp())
        _, cold = timed(lambda: default_model.ensure_converted(tmp / "m", progress=lambda f, m: None))
        shutil.rmtree(tmp)
        print(f"cold start (GGUF -> safetensors conversion): {cold:.1f} s")
    model_dir = default_model.ensure_converted(settings.models_dir / default_model.NAME)
    backend, warm = timed(lambda: TransformersBackend(str(model_dir), model_name="smollm2-135m"))
    print(f"warm load (safetensors cache): {warm:.2f} s  dtype={backend.dtype}")
    backend.chat([conv("Hi")], GenParams(max_new_tokens=4))  # warm-up

    for n in (1, 4, 8):
        print(f"tok/s at batch {n}: {toks_per_s(backend, n, params):.1f}")

    four = [conv(p) for p in PROMPTS[:4]]
    _, t_batch = timed(lambda: backend.chat(four, params))
    _, t_seq = timed(lambda: [backend.chat([c], params) for c in four])
    print(f"4 independent requests, batched / one by one wall time: {t_batch / t_seq:.2f} (reference 0.42)")

    fp32 = TransformersBackend(str(model_dir), model_name="fp32", dtype="float32")
    bf16 = TransformersBackend(str(model_dir), model_name="bf16", dtype="bfloat16")
    tp32, tp16 = toks_per_s(fp32, 1, params), toks_per_s(bf16, 1, params)
    print(f"bf16 / fp32 decode speed at batch 1: {tp16 / tp32:.2f}x (reference 1.94x)")

    try:
        from llama_cpp import Llama
    except ImportError:
        print(
            "llama.cpp reference: llama-cpp-python not installed (pip install llama-cpp-python; reference 169 tok/s)"
        )
        return
    llm = Llama(str(default_model.gguf_file()), verbose=False, n_threads=settings.threads or None)
    t0 = time.perf_counter()
    out = llm.create_chat_completion(conv(PROMPTS[0]), max_tokens=args.max_new_tokens, temperature=0)
    print(f"llama.cpp tok/s at batch 1: {out['usage']['completion_tokens'] / (time.perf_counter() - t0):.1f}")


if __name__ == "__main__":
    main()
