"""Generation benchmark on the default model: llama.cpp (the wheel's Q4_1 GGUF, the llamacpp backend) against
transformers bf16 (the de-quantized cache). Prints, in one run, with the load average:

1. tok/s at batch 1 and with 4 requests in flight, on each engine;
2. time to first token (one streamed request);
3. the default 4-column arena run's wall time on each engine (studio.arena.stream_arena, the Arena tab's default
   columns and the model's decoding defaults), and the llama.cpp / transformers speed-up (goal >= 2.5x);
4. llama.cpp's batch-1 tok/s with threads=1 and threads=2, quiet and while another process burns one core
   (the thread setting's graceful degradation, docs/engines.md).

    python bench/generation.py [--max-new-tokens 128] [--skip-loaded] [--cold]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studio import default_model  # noqa: E402
from studio.backends import Backend, GenParams  # noqa: E402
from studio.backends.llamacpp_backend import LlamaCppBackend  # noqa: E402
from studio.backends.transformers_backend import TransformersBackend  # noqa: E402
from studio.settings import BUILTIN_GGUF, Settings  # noqa: E402

PROMPTS = [
    "Explain why the sky is blue.",
    "Write a short poem about the sea.",
    "What are three uses of copper?",
    "Describe how a bicycle works.",
]
ARENA_QUESTION = "Why do leaves change colour in autumn?"
GGUF_MODEL = BUILTIN_GGUF  # the built-in llama.cpp entry of the default model


def conv(p: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": p}]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def toks_per_s(backend: Backend, n: int, params: GenParams) -> float:
    t0 = time.perf_counter()
    outs = backend.chat([conv(p) for p in PROMPTS[:n]], params)
    return sum(c.completion_tokens for c in outs) / (time.perf_counter() - t0)


def first_token_s(backend: Backend, params: GenParams) -> float:
    t0 = time.perf_counter()
    for chunk in backend.stream(conv(PROMPTS[0]), params):
        if chunk.strip():
            return time.perf_counter() - t0
    return float("nan")


def arena_wall_s(settings: Settings, model: str) -> float:
    """The Arena tab's default run (its 4 default columns on ``model``, the model's decoding defaults)."""
    from storage import Store
    from studio.arena import default_columns, stream_arena
    from studio.models import ModelRegistry

    registry = ModelRegistry(settings)
    store = Store(settings.db_path, data_dir=settings.data_dir)
    try:
        registry.backend(model).chat([conv("Hi")], GenParams(max_new_tokens=4))  # loaded and warm
        t0 = time.perf_counter()
        final = list(stream_arena(store, registry, ARENA_QUESTION, default_columns(model), shuffle_seed=0))[
            -1
        ]
        wall = time.perf_counter() - t0
        if any(final.state.errors):
            print(f"   {model}: column errors {final.state.errors}")
        return wall
    finally:
        registry.close()
        store.close()


def _burn() -> None:
    while True:
        pass


def loaded_threads(params: GenParams) -> None:
    print(f"\n4. llama.cpp batch 1 tok/s by threads, quiet and with one core busy (load {load()})")
    for threads in (1, 2):
        b = LlamaCppBackend(str(default_model.default_gguf()), threads=threads, parallel=4)
        try:
            b.chat([conv("Hi")], GenParams(max_new_tokens=4))
            quiet = toks_per_s(b, 1, params)
            burner = multiprocessing.Process(target=_burn, daemon=True)
            burner.start()
            try:
                time.sleep(1)
                busy = toks_per_s(b, 1, params)
                busy4 = toks_per_s(b, 4, params)
            finally:
                burner.terminate()
                burner.join()
            print(
                f"   threads={threads}: quiet {quiet:6.1f} tok/s | one core busy: batch 1 {busy:6.1f} tok/s, "
                f"4 in flight {busy4:6.1f} tok/s  (load {load()})"
            )
        finally:
            b.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument(
        "--threads", type=int, default=0, help="both engines (0: torch's default, llama.cpp <= 2)"
    )
    ap.add_argument("--cold", action="store_true", help="also time the ~20 s GGUF de-quantization")
    ap.add_argument("--skip-loaded", action="store_true", help="skip section 4 (threads under load)")
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="bench-generation-"))
    settings = Settings.load(
        data_dir=data, dtype="bfloat16", **({"threads": args.threads} if args.threads else {})
    )
    settings.apply_threads()
    params = GenParams(max_new_tokens=args.max_new_tokens)  # greedy; early stops count their real tokens
    print(f"machine: {os.cpu_count()} cores, load {load()}; {args.max_new_tokens} new tokens, greedy")

    if args.cold:
        t0 = time.perf_counter()
        default_model.ensure_converted(data / "cold", progress=lambda f, m: None)
        print(f"transformers cold start (GGUF de-quantization): {time.perf_counter() - t0:.1f} s")
    cache = default_model.ensure_converted(Settings.load().models_dir / default_model.NAME)
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    (settings.models_dir / default_model.NAME).symlink_to(cache.resolve(), target_is_directory=True)

    t0 = time.perf_counter()
    hf = TransformersBackend(str(cache), model_name="bf16", dtype="bfloat16")
    t_hf = time.perf_counter() - t0
    t0 = time.perf_counter()
    ll = LlamaCppBackend(str(default_model.default_gguf()), threads=args.threads or None, model_name="gguf")
    t_ll = time.perf_counter() - t0
    print(
        f"load: transformers bf16 {t_hf:.2f} s (safetensors cache) | llama.cpp {t_ll:.2f} s (the GGUF as is)"
    )
    rows = {}
    for name, b in (("transformers bf16", hf), (f"llama.cpp Q4_1 ({ll.server.threads} thr)", ll)):
        b.chat([conv("Hi")], GenParams(max_new_tokens=4))  # warm-up
        rows[name] = (toks_per_s(b, 1, params), toks_per_s(b, 4, params), first_token_s(b, params))
    ll.close()
    print(f"\n1-2. tok/s and time to first token (load {load()})")
    print(f"   {'engine':<26} {'batch 1':>9} {'4 in flight':>12} {'first token':>12}")
    for name, (b1, b4, ttft) in rows.items():
        print(f"   {name:<26} {b1:9.1f} {b4:12.1f} {ttft * 1000:10.0f} ms")
    del hf

    print(
        f"\n3. default 4-column arena run, {ARENA_QUESTION!r}, the model's decoding defaults (load {load()})"
    )
    walls = {}
    for engine, model in (("transformers bf16", default_model.NAME), ("llama.cpp", GGUF_MODEL)):
        walls[engine] = arena_wall_s(settings, model)
        print(f"   {engine:<18} {walls[engine]:6.1f} s  (load {load()})")
    speedup = walls["transformers bf16"] / walls["llama.cpp"]
    print(f"   llama.cpp speed-up: {speedup:.2f}x (goal >= 2.5x: {'met' if speedup >= 2.5 else 'MISSED'})")

    if not args.skip_loaded:
        loaded_threads(params)
    shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
