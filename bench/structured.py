"""Structured (JSON-schema) decoding on the default model: the cost per token of each grammar library and how
often its output is valid. Prints figures measured in this one run, with the load average.

    python bench/structured.py [--threads 1] [--max-new-tokens 64] [--llguidance-path /tmp/llg]

A batch of 4 left-padded prompts (two CoVe plans: a list of at most 5 questions each ending in '?'; two
cross-check verdicts: an enum), greedy then sampled, ``--max-new-tokens`` each:
- free: no processor; validity = the text parses (strictly, and tolerantly: fences and prose stripped) and matches;
- xgrammar: ``studio.backends.structured.build_processor``, as the backend runs it;
- llguidance (when importable, e.g. ``pip install --target /tmp/llg llguidance``; not a project dependency): the
  same per-row processor shape on ``llguidance.LLMatcher``. Both apply their bitmask with the same CPU kernel, so
  the difference is the grammar engines' own work (accepting a token, computing the next mask).
Overhead per token = (decode time per step with the processor - without) / rows; the processor's own time per
step is measured inside it too (less noisy on a shared machine).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studio import default_model  # noqa: E402
from studio.backends.base import schema_text  # noqa: E402
from studio.backends.structured import build_processor  # noqa: E402
from studio.backends.transformers_backend import TransformersBackend  # noqa: E402
from studio.settings import Settings  # noqa: E402

PLAN = {
    "type": "object",
    "properties": {
        "questions": {
            "type": "array",
            "items": {"type": "string", "pattern": "^[^?\\n]{1,100}\\?$"},
            "minItems": 1,
            "maxItems": 5,
        }
    },
    "required": ["questions"],
}
VERDICTS = ("CONSISTENT", "INCONSISTENT", "PARTIALLY CONSISTENT")
VERDICT = {"type": "object", "properties": {"verdict": {"enum": list(VERDICTS)}}, "required": ["verdict"]}
JSON_PLAN = 'Answer only with JSON: {"questions": ["...?", ...]} (at most 5 questions).'
JSON_VERDICT = 'Answer only with JSON: {"verdict": "CONSISTENT" | "INCONSISTENT" | "PARTIALLY CONSISTENT"}.'
ROWS = [
    (f"Write verification questions to fact-check: 'The Eiffel Tower is in Berlin and was built in 1889.' "
     f"{JSON_PLAN}", PLAN),
    (f"Plan questions to verify this list of politicians born in New York: Hillary Clinton, Donald Trump, "
     f"Michael Bloomberg. {JSON_PLAN}", PLAN),
    (f"Claim: 'Water boils at 50 C at sea level.' Fact: 'Water boils at 100 C at sea level.' Is the claim "
     f"consistent with the fact? {JSON_VERDICT}", VERDICT),
    (f"Answer: 'Mars has two moons, Phobos and Deimos, and rings.' Check: 'Mars has two moons.' "
     f"{JSON_VERDICT}", VERDICT),
]  # fmt: skip


def valid(obj: Any, schema: dict) -> bool:
    """The object matches PLAN or VERDICT (checked by hand: jsonschema is not installed)."""
    if not isinstance(obj, dict):
        return False
    if schema is VERDICT:
        return set(obj) == {"verdict"} and obj["verdict"] in VERDICTS
    qs = obj.get("questions")
    return (
        set(obj) == {"questions"}
        and isinstance(qs, list)
        and 1 <= len(qs) <= 5
        and all(isinstance(q, str) and re.fullmatch(r"[^?\n]{1,100}\?", q) for q in qs)
    )


def tolerant(text: str) -> Any:
    """A lenient parse: strip a code fence and prose around the first object."""
    text = re.sub(r"^```(?:json)?\s*|```\s*$", "", text.strip())
    start = text.find("{")
    if start < 0:
        return None
    try:
        return json.JSONDecoder().raw_decode(text[start:])[0]
    except ValueError:
        return None


class Timed:
    """Wraps a logits processor and adds up the time spent inside it."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.seconds, self.calls = inner, 0.0, 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        t0 = time.perf_counter()
        out = self.inner(input_ids, scores)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return out


def llguidance_factory(path: str | None, tokenizer: Any, vocab: int, eos: list[int]) -> Callable | None:
    """A per-row llguidance processor with the same shape as ours, or None when llguidance is not importable."""
    if path:
        sys.path.insert(0, path)
    try:
        llg = importlib.import_module("llguidance")
        llg_hf = importlib.import_module("llguidance.hf")
        llg_torch = importlib.import_module("llguidance.torch")
    except ImportError:
        return None
    import xgrammar as xgr

    lltok = llg_hf.from_tokenizer(tokenizer, n_vocab=vocab, eos_token=eos[0])
    opts = {"item_separator": ", ", "key_separator": ": ", "whitespace_flexible": False}

    class LLGProcessor:
        def __init__(self, schemas: list[str | None]) -> None:
            grammars = [
                None if s is None else llg.LLMatcher.grammar_from_json_schema(s, defaults=opts)
                for s in schemas
            ]
            self.m = [None if g is None else llg.LLMatcher(lltok, g, log_level=0) for g in grammars]
            for m in self.m:
                if m is not None and m.is_error():
                    raise ValueError(m.get_error())
            self.mask = llg_torch.allocate_token_bitmask(len(schemas), vocab)
            self.first = True

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            if not self.first:
                for i, tok in enumerate(input_ids[:, -1].tolist()):
                    m = self.m[i]
                    if m is not None and not m.is_stopped() and not m.is_error() and tok not in eos:
                        m.consume_token(tok)
            self.first = False
            rows = []
            for i, m in enumerate(self.m):
                if m is None or m.is_error():
                    continue
                if m.is_stopped():  # the grammar has ended (llguidance stops without the EOS): force the end
                    self.mask[i] = 0
                    self.mask[i, eos[0] // 32] = 1 << (eos[0] % 32)
                else:
                    llg_torch.fill_next_token_bitmask(m, self.mask, i)
                rows.append(i)
            if rows:
                xgr.apply_token_bitmask_inplace(
                    scores, self.mask, vocab_size=vocab, indices=rows, backend="cpu"
                )
            return scores

    probe = LLGProcessor([schema_text(PLAN)])  # fail early on an API mismatch
    del probe
    return LLGProcessor


def engine_only(tokenizer: Any, vocab: int, eos: list[int], llg_path: str | None) -> None:
    """Each engine's own cost, without the model: compiling a plan schema, then per token (the next-token mask,
    then accepting the token) over a fixed 3-question plan, for item patterns a plan schema might use. The
    xgrammar compiler here has no cache (build_processor's refuses bounds over MAX_REPEAT; this shows why)."""
    import xgrammar as xgr

    text = json.dumps(
        {"questions": ["Is the Eiffel Tower in Berlin?", "When was the tower built?", "Who built it?"]}
    )
    toks = tokenizer.encode(text, add_special_tokens=False)
    make_llg = llguidance_factory(llg_path, tokenizer, vocab, eos)
    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab, stop_token_ids=eos)
    print(
        f"\nengine only: compile ms, then ms per token (mask + accept) mean/median over a {len(toks)}-token plan"
    )
    for pattern in ("^[^?\\n]+\\?$", "^[^?\\n]{1,60}\\?$", "^[^?\\n]{1,100}\\?$", "^[^?\\n]{3,300}\\?$"):
        plan = json.loads(json.dumps(PLAN))
        plan["properties"]["questions"]["items"]["pattern"] = pattern
        line = f"  items pattern {pattern:<20}"
        compiler = xgr.GrammarCompiler(info, max_threads=2, cache_enabled=False)
        t0 = time.perf_counter()
        grammar = compiler.compile_json_schema(
            schema_text(plan), any_whitespace=False, separators=(", ", ": ")
        )
        compile_ms = 1000 * (time.perf_counter() - t0)
        m, mask, times = xgr.GrammarMatcher(grammar), xgr.allocate_token_bitmask(1, vocab), []
        for tok in toks:
            t0 = time.perf_counter()
            m.fill_next_token_bitmask(mask, 0)
            assert m.accept_token(tok)
            times.append(time.perf_counter() - t0)
        line += f" | xgrammar {compile_ms:7.0f} {_ms(times)}"
        if make_llg is not None:
            t0 = time.perf_counter()
            proc = make_llg([schema_text(plan)])
            init_ms = 1000 * (time.perf_counter() - t0)
            m, times = proc.m[0], []
            for tok in toks:
                t0 = time.perf_counter()
                llg_fill(m, proc.mask)
                assert m.consume_token(tok)
                times.append(time.perf_counter() - t0)
            line += f" | llguidance {init_ms:5.0f} {_ms(times)}"
        print(line)


def _ms(times: list[float]) -> str:
    """'mean/median' in ms."""
    return f"{1000 * statistics.mean(times):.3f}/{1000 * statistics.median(times):.3f}"


def llg_fill(matcher: Any, mask: Any) -> None:
    importlib.import_module("llguidance.torch").fill_next_token_bitmask(matcher, mask, 0)


def run(backend: TransformersBackend, make: Callable | None, sample: bool, max_new: int) -> dict[str, Any]:
    import torch

    ids = [backend._prompt_ids([{"role": "user", "content": p}], max_new) for p, _ in ROWS]
    batch = backend._batch(ids)
    proc = None if make is None else Timed(make([schema_text(s) for _, s in ROWS]))
    kw: dict[str, Any] = (
        {"do_sample": True, "temperature": 0.7, "top_p": 0.95, "top_k": None}
        if sample
        else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    )
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with torch.no_grad():
        out = backend.model.generate(
            **batch,
            max_new_tokens=max_new,
            pad_token_id=backend.tokenizer.pad_token_id,
            logits_processor=[proc] if proc else [],
            **kw,
        )
    seconds = time.perf_counter() - t0
    new = out[:, batch["input_ids"].shape[1] :].tolist()
    eos = backend._eos_ids()
    tokens, strict, loose = 0, 0, 0
    for row, (_, schema) in zip(new, ROWS, strict=True):
        n = next((k for k, t in enumerate(row) if t in eos), len(row))
        tokens += n
        text = backend.tokenizer.decode(row[:n], skip_special_tokens=True).strip()
        try:
            strict += valid(json.loads(text), schema)
        except ValueError:
            pass
        loose += valid(tolerant(text), schema)
    steps = len(new[0])
    return {
        "seconds": seconds,
        "steps": steps,
        "tokens": tokens,
        "strict": strict,
        "loose": loose,
        "proc_s": proc.seconds if proc else 0.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--llguidance-path", default="/tmp/llg", help="a --target dir holding llguidance")
    args = ap.parse_args()
    settings = Settings.load(threads=args.threads or None)
    settings.apply_threads()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}  threads={args.threads}")
    model_dir = default_model.ensure_converted(settings.models_dir / default_model.NAME)
    backend = TransformersBackend(str(model_dir), model_name="smollm2-135m")
    vocab = int(backend.model.get_output_embeddings().weight.shape[0])
    eos = sorted(backend._eos_ids())

    t0 = time.perf_counter()
    build_processor(backend.tokenizer, vocab, [schema_text(PLAN), schema_text(VERDICT)], stop_token_ids=eos)
    print(
        f"xgrammar: tokenizer info + compiling 2 schemas (first use): {1000 * (time.perf_counter() - t0):.0f} ms"
    )
    t0 = time.perf_counter()
    build_processor(backend.tokenizer, vocab, [schema_text(PLAN), schema_text(VERDICT)], stop_token_ids=eos)
    print(f"xgrammar: the same again (cached): {1000 * (time.perf_counter() - t0):.2f} ms")

    engines: dict[str, Callable | None] = {
        "free": None,
        "xgrammar": lambda schemas: build_processor(backend.tokenizer, vocab, schemas, stop_token_ids=eos),
    }
    t0 = time.perf_counter()
    llg = llguidance_factory(args.llguidance_path, backend.tokenizer, vocab, eos)
    if llg is None:
        print("llguidance: not importable (pip install --target /tmp/llg llguidance), skipped")
    else:
        print(f"llguidance: tokenizer + first grammar: {1000 * (time.perf_counter() - t0):.0f} ms")
        engines["llguidance"] = llg
    print("outlines: not measured (a heavy install; not needed once two maintained engines are compared)")

    engine_only(backend.tokenizer, vocab, eos, args.llguidance_path)
    run(backend, None, False, 4)  # warm-up
    results: dict[tuple[str, bool], dict[str, Any]] = {}
    for sample in (False, True):
        for name, make in engines.items():
            results[(name, sample)] = run(backend, make, sample, args.max_new_tokens)

    rows = len(ROWS)
    print(f"\nbatch of {rows} left-padded rows, up to {args.max_new_tokens} new tokens each")
    print(f"{'engine':<11} {'decoding':<8} {'steps':>5} {'tok/s':>6} {'ms/step':>8} {'proc ms/row/step':>16} "
          f"{'overhead ms/tok':>15} {'valid strict':>12} {'valid tolerant':>14}")  # fmt: skip
    for (name, sample), r in results.items():
        free = results[("free", sample)]
        per_step = 1000 * r["seconds"] / r["steps"]
        overhead = (per_step - 1000 * free["seconds"] / free["steps"]) / rows
        proc = 1000 * r["proc_s"] / r["steps"] / rows
        print(
            f"{name:<11} {'sampled' if sample else 'greedy':<8} {r['steps']:>5} {r['tokens'] / r['seconds']:>6.1f} "
            f"{per_step:>8.1f} {proc:>16.3f} {overhead:>15.2f} {r['strict']:>10}/{rows} {r['loose']:>12}/{rows}"
        )
    for name in engines:
        if name == "free":
            continue
        proc = sum(results[(name, s)]["proc_s"] / results[(name, s)]["steps"] for s in (False, True)) / 2
        step = sum(results[("free", s)]["seconds"] / results[("free", s)]["steps"] for s in (False, True)) / 2
        print(f"{name}: its own time per step / a free decode step = {proc / step:.3f}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
