"""The Self-Taught Evaluator (Wang et al. 2024, arXiv 2408.02666), with Meta-Rewarding's meta-judge as an option
(Wu et al. 2024, arXiv 2407.19594): a judge that improves itself from unlabelled instructions alone.

1. instructions x: a store prompt set (``prompt_set``), snapshot into ``prompts.jsonl``; a set named like a
   held-out split is refused (judges are measured there, so their prompts must never be trained on);
2. response pairs: y_w = the model's answer to x; x' = a *modified* instruction the model writes (relevant to x,
   not the same; ``prompts/self_taught_modify.txt``); y_l = the model's answer to x', a worse answer to x by
   construction. ``pairs.jsonl`` holds them, ``dropped_pairs.jsonl`` the ones filtered out, with the reason;
3. judgement annotation: the current judge samples N judgements (``samples``, temperature 0.8) of (y_w, y_l) with
   the studio's MT-Bench pairwise judge, in both orders; a judgement is correct when it prefers y_w in that order.
   As in the paper, ``keep_per_order`` correct judgements (one) are kept per pair and order, and the two orders
   are balanced (the paper balances the verdict labels; ``balance_orders``);
4. training: SFT on the kept judgements (prompt = the judge prompt, completion = the judgement), or DPO with kept
   vs wrong judgements of the same pair and order (``objective``). Each iteration trains from the seed model, as
   the paper does, on judgements by the previous iteration's judge (``iterations``);
5. Meta-Rewarding (``meta``, DPO only): the model compares two of its own judgements of the same pair and order
   (``prompts/meta_judge.txt``) in both positions; a consistent preference gives one more DPO pair;
6. each iteration's judge is registered as a chat model with its lineage (parent = the seed, ``judge_model`` =
   the judge whose judgements trained it: judge v1 of v0), usable as ``studio judge --judge pairwise --model``.

With too few kept judgements the job fails with the counts (a 135M model rarely prefers y_w in order BA); it
never trains on nothing. Curves: candidate judgements, kept rate per order, kept examples, meta pairs, loss.
"""

from __future__ import annotations

import gc
import json
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.errors import InputError
from studio.prompts import Prompts
from studio.training import data
from studio.training.base import Trainer
from studio.training.config import SelfTaughtConfig, looks_like_test_split
from studio.training.rundir import RunDir, read_json, read_jsonl, write_json, write_jsonl

if TYPE_CHECKING:
    from storage import Store

PROMPTS = Prompts(Path(__file__).parent / "prompts", tidy=True)
ORDERS = ("AB", "BA")
MIN_WORDS = 3
_META_WINNER = re.compile(r"judge?ment\s*([12])", re.IGNORECASE)


# -- step 2: response pairs -------------------------------------------------------------------------------------
def modified_instruction(text: str) -> str:
    """x' from the model's reply: its first line, without numbering, a 'Modified instruction:' label or quotes."""
    from studio.training.self_instruct import clean

    line = clean(text)
    line = re.sub(r"^(?:modified\s+)?instruction\s*:\s*", "", line, flags=re.IGNORECASE)
    return line.strip("\"'` ").strip()


def _why_not(x: str, x_mod: str) -> str:
    if not x_mod:
        return "no modified instruction"
    if len(x_mod.split()) < MIN_WORDS:
        return f"modified instruction shorter than {MIN_WORDS} words"
    if " ".join(x_mod.lower().split()) == " ".join(x.lower().split()):
        return "modified instruction identical to the instruction"
    return ""


def _chat(backend: Any, texts: Sequence[str], params: Any) -> list[str]:
    return (
        [c.text for c in backend.chat([[{"role": "user", "content": t}] for t in texts], params)]
        if texts
        else []
    )


def build_pairs(
    backend: Any, prompts: Sequence[str], cfg: SelfTaughtConfig
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pairs, dropped): per instruction x, y_w = answer to x, x' = modified instruction, y_l = answer to x'."""
    from studio.backends import GenParams

    answer = GenParams(cfg.max_new_tokens, cfg.response_temperature, 1.0, cfg.seed)
    modify = GenParams(cfg.instruction_max_new_tokens, cfg.instruction_temperature, 0.95, cfg.seed)
    chosen = _chat(backend, prompts, answer)
    modified = [
        modified_instruction(t)
        for t in _chat(backend, [PROMPTS.text("self_taught_modify", instruction=p) for p in prompts], modify)
    ]
    reasons = [_why_not(x, m) for x, m in zip(prompts, modified, strict=True)]
    usable = [i for i, r in enumerate(reasons) if not r]
    rejected = dict(zip(usable, _chat(backend, [modified[i] for i in usable], answer), strict=True))
    pairs, dropped = [], []
    for i, x in enumerate(prompts):
        row = {"prompt": x, "modified": modified[i], "chosen": chosen[i], "rejected": rejected.get(i, "")}
        reason = reasons[i] or ("the two responses are identical" if row["chosen"] == row["rejected"] else "")
        reason = reason or (
            "an empty response" if not (row["chosen"].strip() and row["rejected"].strip()) else ""
        )
        (dropped if reason else pairs).append({**row, "reason": reason} if reason else row)
    return pairs, dropped


# -- step 3: judgements -----------------------------------------------------------------------------------------
def judge_conversation(pair: dict[str, Any], order: str) -> list[dict[str, str]]:
    """The studio's MT-Bench pairwise judge prompt for (y_w, y_l) shown in ``order`` (AB: y_w is Assistant A)."""
    from studio.judges import JudgeItem
    from studio.judges.pairwise import pairwise_conversation

    return pairwise_conversation(JudgeItem.pair(pair["prompt"], pair["chosen"], pair["rejected"]), order)


def annotate(backend: Any, pairs: Sequence[dict[str, Any]], cfg: SelfTaughtConfig, seed: int) -> list[dict]:
    """N sampled judgements of every pair in both orders, one row per (pair, order, sample). ``winner`` is in
    the caller's labels (A = y_w, whatever the order); ``correct``: the judgement prefers y_w."""
    from studio.judges import JudgeItem, make_judge

    items = [JudgeItem.pair(p["prompt"], p["chosen"], p["rejected"], key=i) for i, p in enumerate(pairs)]
    rows: list[dict[str, Any]] = []
    for k in range(cfg.samples):  # one seed per sample: every order of every pair goes out as one batch
        judge = make_judge(
            "pairwise", {"temperature": cfg.judge_temperature, "top_p": 1.0, "seed": seed + k,
                         "max_new_tokens": cfg.judge_max_new_tokens, "structured": cfg.judge_structured},
        )  # fmt: skip
        for i, verdict in enumerate(judge.judge(items, backend)):
            for o, order in enumerate(ORDERS):
                text = verdict.raw[o] if o < len(verdict.raw) else ""
                winner = verdict.order_winners[o] if o < len(verdict.order_winners) else None
                rows.append({"pair": i, "order": order, "sample": k, "text": text, "winner": winner,
                             "correct": winner == "A"})  # fmt: skip
    return rows


def select(judgements: Sequence[dict], cfg: SelfTaughtConfig, rng: random.Random) -> tuple[dict, dict]:
    """({(pair, order): {"kept": [...], "wrong": [...]}}, counts): the correct judgements kept per pair and
    order (``keep_per_order``, drawn at random), then as many from each order (``balance_orders``)."""
    groups: dict[tuple[int, str], dict[str, list[dict]]] = {}
    for j in judgements:
        g = groups.setdefault((j["pair"], j["order"]), {"correct": [], "wrong": []})
        if j["text"].strip():
            g["correct" if j["correct"] else "wrong"].append(j)
    for g in groups.values():
        correct = _distinct(g.pop("correct"))
        n = min(len(correct), cfg.keep_per_order) if cfg.keep_per_order else len(correct)
        g["kept"], g["wrong"] = rng.sample(correct, n), _distinct(g["wrong"])
    counts: dict[str, Any] = {}
    for order in ORDERS:
        rows = [j for j in judgements if j["order"] == order]
        counts[f"candidates_{order}"] = len(rows)
        counts[f"correct_{order}"] = sum(j["correct"] for j in rows)
        counts[f"unreadable_{order}"] = sum(j["winner"] is None for j in rows)
        counts[f"kept_rate_{order}"] = counts[f"correct_{order}"] / len(rows) if rows else 0.0
        counts[f"selected_{order}"] = sum(len(g["kept"]) for (_, o), g in groups.items() if o == order)
    if cfg.balance_orders:
        n = min(counts["selected_AB"], counts["selected_BA"])
        for order in ORDERS:
            keys = [k for k in groups if k[1] == order]
            flat = [(k, j) for k in keys for j in groups[k]["kept"]]
            keep = {id(j) for _, j in rng.sample(flat, n)}
            for k in keys:
                groups[k]["kept"] = [j for j in groups[k]["kept"] if id(j) in keep]
    for order in ORDERS:
        counts[f"kept_{order}"] = sum(len(g["kept"]) for (_, o), g in groups.items() if o == order)
    return groups, counts


def _distinct(rows: list[dict]) -> list[dict]:
    seen: set[str] = set()
    return [r for r in rows if not (r["text"] in seen or seen.add(r["text"]))]  # type: ignore[func-returns-value]


def sft_rows(pairs: Sequence[dict], groups: dict) -> list[dict[str, Any]]:
    """Prompt = the judge prompt of that pair and order; completion = a kept judgement."""
    return [
        {
            "prompt": judge_conversation(pairs[i], order),
            "completion": [{"role": "assistant", "content": j["text"]}],
        }
        for (i, order), g in sorted(groups.items())
        for j in g["kept"]
    ]


def dpo_rows(pairs: Sequence[dict], groups: dict, rng: random.Random) -> list[dict[str, Any]]:
    """Chosen = a kept (correct) judgement, rejected = a wrong one of the same pair and order."""
    out = []
    for (i, order), g in sorted(groups.items()):
        for j in g["kept"] if g["wrong"] else []:
            out.append(_pref(pairs[i], order, j["text"], rng.choice(g["wrong"])["text"], "label"))
    return out


def _pref(pair: dict, order: str, chosen: str, rejected: str, source: str) -> dict[str, Any]:
    return preference(judge_conversation(pair, order), chosen, rejected, source)


def preference(prompt: list[dict[str, str]], chosen: str, rejected: str, source: str) -> dict[str, Any]:
    """One DPO row in TRL's conversational layout: the judge's conversation, two judgements as completions."""
    return {"prompt": prompt, "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}], "source": source}  # fmt: skip


# -- step 5: Meta-Rewarding -------------------------------------------------------------------------------------
def meta_pairs(
    backend: Any, pairs: Sequence[dict], judgements: Sequence[dict], cfg: SelfTaughtConfig, rng: random.Random
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The meta-judge compares two judgements (different verdicts) of the same pair and order, in both positions;
    a consistent winner gives a (winner, loser) DPO pair. Returns (pairs, counts)."""
    groups: dict[Any, list[dict]] = {}
    for j in judgements:
        groups.setdefault((j["pair"], j["order"]), []).append(j)
    return meta_judge_pairs(
        backend, groups, lambda key, a, b: _meta_prompt(pairs[key[0]], key[1], a, b),
        lambda key: judge_conversation(pairs[key[0]], key[1]), per_group=cfg.meta_pairs,
        max_new_tokens=cfg.meta_max_new_tokens, seed=cfg.seed, rng=rng,
    )  # fmt: skip


def meta_judge_pairs(
    backend: Any,
    groups: dict[Any, Sequence[dict]],
    meta_prompt: Any,
    judge_prompt: Any,
    *,
    per_group: int,
    max_new_tokens: int,
    seed: int,
    rng: random.Random,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Meta-Rewarding's step, for any judge: ``groups`` maps a key (what was judged) to its judgements
    (``text``, ``winner``: the verdict). Up to ``per_group`` pairs of distinct judgements with different verdicts
    per key go to the meta-judge (``meta_prompt(key, first, second)``: its prompt text) in both positions; a
    consistent winner gives a DPO pair whose prompt is ``judge_prompt(key)`` (the judge's conversation).
    Returns (pairs, counts)."""
    from studio.backends import GenParams
    from studio.backends.base import schema_text
    from studio.strategies.schemas import load_schema

    cands = []
    for key in sorted(groups):
        texts = _distinct([j for j in groups[key] if j["text"].strip()])
        options = [(a, b) for n, a in enumerate(texts) for b in texts[n + 1 :] if a["winner"] != b["winner"]]
        cands += [(key, a["text"], b["text"]) for a, b in rng.sample(options, min(per_group, len(options)))]
    schema = load_schema("meta_judge", Path(__file__).parent / "prompts",
                         max_explanation=max(16, 2 * (max_new_tokens - 24)))  # fmt: skip
    params = GenParams(max_new_tokens, 0.0, 1.0, seed, schema=schema_text(schema))
    prompts = [meta_prompt(key, first, second) for key, a, b in cands for first, second in ((a, b), (b, a))]
    picks = [read_meta(t) for t in _chat(backend, prompts, params)] if cands else []
    out = []
    for n, (key, a, b) in enumerate(cands):
        first, swapped = picks[2 * n], picks[2 * n + 1]
        if first and swapped and first != swapped:  # the same judgement won in both positions
            win, lose = (a, b) if first == "1" else (b, a)
            out.append(preference(judge_prompt(key), win, lose, "meta"))
    return out, {"meta_candidates": len(cands), "meta_consistent": len(out),
                 "meta_unreadable": sum(p is None for p in picks)}  # fmt: skip


def _meta_prompt(pair: dict, order: str, judgement_1: str, judgement_2: str) -> str:
    a, b = (pair["chosen"], pair["rejected"]) if order == "AB" else (pair["rejected"], pair["chosen"])
    return PROMPTS.text("meta_judge", question=pair["prompt"], answer_a=a, answer_b=b,
                        judgement_1=judgement_1, judgement_2=judgement_2)  # fmt: skip


def read_meta(text: str) -> str | None:
    """'1' or '2' from a meta-judgement (the JSON's winner, or the last 'Judgement N' after 'Winner:')."""
    from studio.strategies.parsing import parse_json

    obj = parse_json(text or "")
    if isinstance(obj, dict) and isinstance(obj.get("winner"), str):
        found = _META_WINNER.findall(obj["winner"])
        return found[-1] if found else None
    tail = (text or "").rpartition("Winner")[2] if "Winner" in (text or "") else ""
    found = _META_WINNER.findall(tail)
    return found[-1] if found else None


# -- step 4: training -------------------------------------------------------------------------------------------
def run_sft(cfg: SelfTaughtConfig, run: RunDir, rows: list[dict], *, callback: Any, checkpoints: Path,
            target: Path) -> dict[str, Any]:  # fmt: skip
    """SFT (LoRA) of the seed on the kept judgements, with TRL's ``SFTTrainer``; the loss is on the judgement."""
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from studio.training.common import cuda, load_tokenizer, policy_model, resume_from, save_policy

    bf16_ok = cuda() and torch.cuda.is_bf16_supported()
    kwargs = cfg.trl_args(str(checkpoints), cuda=cuda(), bf16_ok=bf16_ok)
    for dpo_only in ("beta", "loss_type"):
        kwargs.pop(dpo_only, None)
    try:
        args = SFTConfig(**kwargs, completion_only_loss=True)
    except (TypeError, ValueError) as e:
        raise InputError(f"invalid training settings: {e}") from None
    model, peft = policy_model(cfg)
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(rows),
        processing_class=load_tokenizer(cfg.model_path), peft_config=peft, callbacks=[callback],
    )  # fmt: skip
    out = trainer.train(resume_from_checkpoint=resume_from(run, checkpoints))
    paths = save_policy(trainer, cfg, run, target)
    return {**paths, "metrics": dict(out.metrics), "steps": int(trainer.state.global_step)}


def shortfall(t: int, counts: dict[str, Any], cfg: SelfTaughtConfig) -> str:
    """Why iteration ``t`` has too little to train on, with the counts."""
    per = "; ".join(
        f"order {o}: {counts[f'correct_{o}']} of {counts[f'candidates_{o}']} judgements prefer y_w "
        f"({counts[f'unreadable_{o}']} unreadable), {counts[f'selected_{o}']} kept, {counts[f'kept_{o}']} after "
        "balancing"
        for o in ORDERS
    )
    hint = (
        " balance_orders keeps as many judgements from each order, and the judge preferred y_w in one order only "
        "(a position bias): set balance_orders=false to train on them anyway, or use a stronger model."
        if cfg.balance_orders
        and min(counts["selected_AB"], counts["selected_BA"]) == 0
        and max(counts["selected_AB"], counts["selected_BA"])
        else " Try more prompts or samples, or a stronger model."
    )
    what = "preference pairs (kept vs wrong judgements)" if cfg.objective == "dpo" else "kept judgements"
    return (
        f"iteration {t}: {counts['examples']} {what} to train on, fewer than min_kept={cfg.min_kept} "
        f"({counts['pairs']} response pairs; {per}).{hint}"
    )


# -- the trainer ------------------------------------------------------------------------------------------------
class SelfTaughtEvaluator(Trainer):
    Config = SelfTaughtConfig
    description = (
        "Self-Taught Evaluator: the model builds (better, worse) pairs from modified instructions, keeps its "
        "correct judgements and trains on them: a new pairwise judge (optionally Meta-Rewarding)"
    )
    paper = (
        "Wang et al. 2024, Self-Taught Evaluators, arXiv 2408.02666; Wu et al. 2024, Meta-Rewarding Language "
        "Models, arXiv 2407.19594"
    )
    curves = ("loss", "selftaught/candidates", "selftaught/kept_rate_AB", "selftaught/kept_rate_BA",
              "selftaught/examples", "selftaught/meta_pairs")  # fmt: skip

    # -- parent side ----------------------------------------------------------------------------------------------
    @classmethod
    def _data(cls, store: Store, config: Any, limit: int) -> tuple[data.DataPreview, Any]:
        rows = store.list_prompts(config.prompt_set or None, limit=None)
        held_out = sorted({r["prompt_set"] for r in rows if looks_like_test_split(r["prompt_set"])})
        rows = [r for r in rows if not looks_like_test_split(r["prompt_set"])][: config.max_prompts]
        preview = data.DataPreview(
            cls.registered_name, "prompts", len(rows), [{"prompt": r["text"]} for r in rows[:limit]],
            {"prompts": len(rows)},
        )  # fmt: skip
        if held_out:
            preview.notes.append(f"held-out prompt sets left out: {', '.join(held_out)}")
        preview.problems += data.too_few(len(rows), config.min_examples, "prompts", data.PROMPT_HINT)
        return preview, rows

    @classmethod
    def _write(cls, rows: Any, run: RunDir) -> None:
        write_jsonl(run.path / "prompts.jsonl", [{"id": r["id"], "text": r["text"]} for r in rows])

    # -- job side -------------------------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        from studio.backends.transformers_backend import TransformersBackend

        cfg = self.config
        seed = TransformersBackend(cfg.model_path, adapter=cfg.adapter_path or None, dtype=cfg.gen_dtype,
                                   model_name=cfg.base_model)  # fmt: skip
        models: list[dict[str, Any]] = []
        notes: list[str] = []
        step, judge_name, judge_backend = 0, cfg.base_model, seed
        try:
            pairs = self.pairs(seed)
            for t in range(cfg.iterations):
                try:
                    entry, step = self.iteration(t, pairs, judge_backend, judge_name, step)
                except InputError as e:
                    if not models:
                        raise
                    notes.append(str(e))
                    print(f"[studio] self-taught: {e}", flush=True)
                    break
                models.append(entry)
                if t + 1 < cfg.iterations:  # the new judge annotates the next iteration
                    _close(judge_backend, keep=seed)
                    judge_name = entry["name"]
                    judge_backend = TransformersBackend(entry["path"], adapter=entry["adapter"] or None,
                                                        dtype=cfg.gen_dtype, model_name=judge_name)  # fmt: skip
        finally:
            _close(judge_backend, keep=seed)
            _close(seed)
        last = read_json(self.run.iteration(len(models) - 1) / "done.json", {})
        return {"models": models, "notes": notes, "steps": step, "metrics": last.get("counts", {})}

    def pairs(self, backend: Any) -> list[dict[str, Any]]:
        """Step 2, once: the response pairs every iteration's judge annotates (kept in ``pairs.jsonl``)."""
        path = self.run.path / "pairs.jsonl"
        if path.exists():
            return read_jsonl(path)
        prompts = [r["text"] for r in read_jsonl(self.run.path / "prompts.jsonl")]
        pairs, dropped = build_pairs(backend, prompts, self.config)
        write_jsonl(self.run.path / "dropped_pairs.jsonl", dropped)
        write_jsonl(path, pairs)
        print(f"[studio] self-taught: {len(pairs)} response pairs from {len(prompts)} prompts "
              f"({len(dropped)} dropped: see dropped_pairs.jsonl)", flush=True)  # fmt: skip
        if not pairs:
            raise InputError(f"no response pair: all {len(prompts)} modified instructions were dropped "
                             "(see dropped_pairs.jsonl in the run dir)")  # fmt: skip
        return pairs

    def iteration(
        self, t: int, pairs: list[dict], backend: Any, judge_name: str, step: int
    ) -> tuple[dict, int]:
        """Steps 3-6 of iteration ``t``: annotate with the current judge, keep, train from the seed, register."""
        cfg, it = self.config, self.run.iteration(t)
        it.mkdir(exist_ok=True)
        done = read_json(it / "done.json")
        if done:  # resumed: this iteration is complete
            return done["model"], done["step"]
        if (it / "judgements.jsonl").exists():
            judgements = read_jsonl(it / "judgements.jsonl")
        else:
            judgements = annotate(backend, pairs, cfg, cfg.seed + 1000 * t)
            write_jsonl(it / "judgements.jsonl", judgements)
        rng = random.Random(cfg.seed + t)
        groups, counts = select(judgements, cfg, rng)
        rows = sft_rows(pairs, groups) if cfg.objective == "sft" else dpo_rows(pairs, groups, rng)
        if cfg.meta:
            extra, meta_counts = meta_pairs(backend, pairs, judgements, cfg, rng)
            rows, counts = rows + extra, {**counts, **meta_counts}
        counts = {**counts, "pairs": len(pairs), "examples": len(rows), "judge_model": judge_name}
        write_jsonl(it / "train.jsonl", rows)
        write_json(it / "counts.json", counts)
        self._log(step, {"selftaught/iteration": t, "selftaught/candidates": len(judgements),
                         "selftaught/kept_rate_AB": counts["kept_rate_AB"],
                         "selftaught/kept_rate_BA": counts["kept_rate_BA"], "selftaught/examples": len(rows),
                         "selftaught/meta_pairs": counts.get("meta_consistent", 0)})  # fmt: skip
        print(f"[studio] self-taught iteration {t}: {json.dumps(counts)}", flush=True)
        if len(rows) < cfg.min_kept:
            raise InputError(shortfall(t, counts, cfg))
        out = self.fit(it, rows, step)
        entry = self.model_entry(
            out, name=f"{cfg.output_name}-v{t + 1}", parent=cfg.base_model, iteration=t + 1,
            judge_model=judge_name, objective=cfg.objective, examples=len(rows), meta=cfg.meta,
        )  # fmt: skip
        self.run.announce_model(entry)
        step += out["steps"]
        write_json(it / "done.json", {"model": entry, "step": step, "counts": counts})
        return entry, step

    def fit(self, it: Path, rows: list[dict], step: int) -> dict[str, Any]:
        """Train the seed on this iteration's rows (the paper starts every iteration from the seed model)."""
        import torch

        torch.set_grad_enabled(True)  # the generation backend turned gradients off process-wide
        cfg, target = self.config, it / ("adapter" if self.config.use_lora else "model")
        kw = {"callback": self.callback(step), "checkpoints": it / "checkpoints", "target": target}
        if cfg.objective == "sft":
            return run_sft(cfg, self.run, rows, **kw)
        from datasets import Dataset

        from studio.training.dpo import run_dpo

        return run_dpo(cfg, self.run, Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")}
                                                         for r in rows]), **kw)  # fmt: skip


def _close(backend: Any, keep: Any = None) -> None:
    if backend is not None and backend is not keep:
        backend.close()
        gc.collect()
