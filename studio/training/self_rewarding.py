"""The Self-Rewarding loop (Yuan et al. 2024, arXiv 2401.10020), as ``../shared/METHODS.md`` specifies it.

For t = 0 .. T-1, from M_0 = the starting model:

0. new prompts: M_t writes them few-shot from the store's prompts (Self-Instruct, filtered), or the user's
   prompt set is used as given (``prompt_source``);
1. M_t samples N answers per prompt (temperature 0.7, top-p 0.9);
2. the judge (M_t itself, or ``judge_model``: weak-to-strong when weaker) scores each answer with the additive
   5-point prompt, ``judge_samples`` samples averaged; failed verdicts are kept and counted. With
   ``judge_score_mode="logprob"`` the score is read from P("0".."5") after an assistant "Score: " prefill
   (sum k * P(k)), which always exists: a small model as its own judge rarely writes a parsable score;
3. pairs: (highest, lowest) score per prompt; ties dropped;
4. the pairs are stored with source ai-judge and iteration t: the job writes ``iter_<t>/generated.jsonl``, and
   the runner imports it into the store on its next sync (the job never opens the store);
5. DPO from M_t with M_t as the reference gives M_{t+1}, saved in ``iter_<t>/adapter`` and registered.

Before each iteration the judge scores both answers of up to ``agreement_max_pairs`` human-labelled pairs; its
pairwise accuracy (chosen scored higher; ties and failures are not agreement) is logged, and below
``agreement_threshold`` the loop warns or stops (``agreement_action``).

Task mode (``task``, for ``studio improve``): the prompts are ``max_prompts`` questions of a verifiable task's
TRAIN split (``studio.eval.tasks``), drawn per iteration; their answers are never read (the model judges itself)
and no store prompt is needed. One improve iteration is one job with ``iterations=1``; ``start_iteration``
numbers the model M_{start+1}.

Two options extend the loop:

- Thought Preference Optimization (``tpo``; Wu et al. 2024, "Thinking LLMs", arXiv 2410.10630): the model is
  asked with the paper's thought prompt (``prompts/tpo_generic.txt`` or ``tpo_specific.txt``) and writes a
  thought, then a response after the prompt's marker (:data:`TPO_MARKERS`). The judge sees only the response; DPO
  trains on the whole output (thought + response) of the best and worst answers, the prompt being the thought
  prompt the model was asked. An answer without the marker, or with nothing after it, is not judged: it is
  dropped and counted (``selfreward/tpo_dropped``). The default model never writes the marker (measured: 0 of
  12 answers), so ``tpo_structured`` asks for the thought and the response as JSON fields under a schema. ``generated.jsonl`` keeps each answer's thought, response
  and the exact text the judge saw;
- Meta-Rewarding (``meta_rewarding``; Wu et al. 2024, arXiv 2407.19594): the model as meta-judge compares two of
  its own additive judgements of one answer (``prompts/meta_judge_additive.txt``), in both positions, with the
  Self-Taught Evaluator's meta-judge logic (:func:`studio.training.self_taught.meta_judge_pairs`); a consistent
  winner gives a judge preference pair (the judge prompt, the winning judgement, the losing one), trained with
  DPO in the same step as the answer pairs (``meta_pairs.jsonl``; ``selfreward/meta_pairs``). The judgements
  are the judge's own text samples (``judge_score_mode=text``) or, with the log-prob judge (which writes none),
  ``meta_judgements`` text judgements per answer sampled under the additive judge's JSON schema (the default
  model never writes a free-text "Score: N": 0 of 8 at 64 and 112 tokens; under the schema 8 of 8), shown to
  the meta-judge and trained in the published form (justification, then "Score: N").

Resume: a finished iteration (its adapter saved) is skipped; an iteration whose pairs were written continues
with DPO from its last checkpoint.
"""

from __future__ import annotations

import gc
import json
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.errors import InputError
from studio.prompts import Prompts
from studio.training import data
from studio.training.base import Trainer
from studio.training.config import SelfRewardingConfig
from studio.training.dpo import DPO_CURVES
from studio.training.rundir import RunDir, read_json, read_jsonl, write_json, write_jsonl

if TYPE_CHECKING:
    from storage import Store
    from studio.models import ModelRegistry

AI_JUDGE = "ai-judge"  # the judge name of the stored (max, min) pairs: Filters(annotator="ai-judge")
PROMPTS = Prompts(Path(__file__).parent / "prompts", tidy=True)
#: the marker after which each TPO thought prompt asks for the response (the prompt files name it too)
TPO_MARKERS = {"generic": "Here is my response:", "specific": "<R>"}


def thought_prompt(question: str, which: str = "generic") -> str:
    """The question inside the paper's thought prompt (TPO): what the model is asked, and DPO's prompt."""
    return PROMPTS.text(f"tpo_{which}", question=question)


def split_thought(text: str, which: str = "generic", structured: bool = False) -> tuple[str, str] | None:
    """(thought, response) of a TPO answer, split at the first marker (``structured``: the JSON's fields); None
    without one or with no response."""
    if structured:
        from studio.strategies.parsing import parse_json

        obj = parse_json(text or "")
        ok = isinstance(obj, dict) and all(isinstance(obj.get(k), str) for k in ("thought", "response"))
        thought, marker, response = (obj["thought"], "json", obj["response"]) if ok else ("", "", "")
    else:
        thought, marker, response = text.partition(TPO_MARKERS[which])
    if not marker or not response.strip():
        return None
    return thought.strip(), response.strip()


def thought_schema(max_new_tokens: int) -> str:
    """The structured TPO answer's JSON schema, its fields sized to fit ``max_new_tokens``."""
    from studio.backends.base import schema_text
    from studio.strategies.schemas import load_schema

    chars = max(8, 3 * (max_new_tokens - 12) // 2)
    return schema_text(
        load_schema("tpo_thought", Path(__file__).parent / "prompts", max_thought=chars, max_response=chars)
    )


def _tpo_question(which: str) -> Any:
    def ask(task: Any, item: Any) -> str:
        return thought_prompt(task.prompt(item), which)

    ask.__doc__ = (
        f"A task question inside the {which} thought prompt: how ``studio improve`` asks a TPO model."
    )
    return ask


def _tpo_response(which: str) -> Any:
    def response(text: str) -> str:
        parts = split_thought(text, which, structured=True) or split_thought(text, which)
        return parts[1] if parts else text

    response.__doc__ = (
        f"What ``studio improve`` scores of a TPO answer ({which} prompt): its response (the JSON's field or "
        "after the marker), or all of it when it has none (what a reader would see)."
    )
    return response


#: the held-out wording and answer split of a TPO model (``module:function`` references, per thought prompt)
tpo_generic_question, tpo_specific_question = _tpo_question("generic"), _tpo_question("specific")
tpo_generic_response, tpo_specific_response = _tpo_response("generic"), _tpo_response("specific")


def build_pairs(prompt: str, answers: list[str], ratings: list[float | None]) -> dict[str, Any] | None:
    """(highest, lowest) scored answer of one prompt, or None on a tie, too few scores or identical texts."""
    scored = [(r, i) for i, r in enumerate(ratings) if r is not None]
    if len(scored) < 2:
        return None
    (hi, best), (lo, worst) = max(scored), min(scored)
    if hi == lo or answers[best] == answers[worst]:
        return None
    return {"prompt": prompt, "chosen": answers[best], "rejected": answers[worst], "chosen_index": best,
            "rejected_index": worst, "chosen_score": hi, "rejected_score": lo}  # fmt: skip


def human_agreement(judge: Any, backend: Any, pairs: list[dict[str, str]]) -> dict[str, Any]:
    """The judge's pairwise accuracy on human pairs: both answers scored, the chosen one must score higher."""
    from studio.judges import JudgeItem

    items = [JudgeItem.single(p["prompt"], p[side]) for p in pairs for side in ("chosen", "rejected")]
    verdicts = judge.judge(items, backend)
    agree = ties = failed = 0
    for chosen, rejected in zip(verdicts[::2], verdicts[1::2], strict=True):
        if not (chosen.ok and rejected.ok):
            failed += 1
        elif chosen.rating > rejected.rating:
            agree += 1
        elif chosen.rating == rejected.rating:
            ties += 1
    judged = len(pairs) - failed
    accuracy = agree / judged if judged else None
    return {
        "pairs": len(pairs),
        "judged": judged,
        "agree": agree,
        "ties": ties,
        "failed": failed,
        "accuracy": accuracy,
    }


def dpo_dataset(pairs: list[dict[str, Any]], judge_pairs: list[dict[str, Any]] = ()) -> Any:  # type: ignore[assignment]
    """The answer pairs (plain text) and the meta-judge's judge pairs (already conversational), as one set."""
    from datasets import Dataset

    rows = [
        {
            "prompt": [{"role": "user", "content": p["prompt"]}],
            "chosen": [{"role": "assistant", "content": p["chosen"]}],
            "rejected": [{"role": "assistant", "content": p["rejected"]}],
        }
        for p in pairs
    ]
    return Dataset.from_list(
        rows + [{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in judge_pairs]
    )


class Stop(Exception):
    """The loop ends early (no prompts, no pairs, judge below the agreement threshold); the reason is kept."""


class SelfRewarding(Trainer):
    Config = SelfRewardingConfig
    description = (
        "Self-Rewarding loop: M_t writes prompts, answers, judges itself (additive), then DPO -> M_t+1"
    )
    paper = "Yuan et al. 2024, Self-Rewarding Language Models, arXiv 2401.10020"
    curves = (*DPO_CURVES, "selfreward/pairs", "selfreward/mean_score", "judge/human_agreement",
              "selfreward/tpo_dropped", "selfreward/meta_pairs")  # fmt: skip
    #: ``studio improve`` scores the models with the answer budget they were trained with
    eval_tokens = "max_new_tokens"

    @classmethod
    def eval_prompt_for(cls, config: SelfRewardingConfig) -> str:
        """How ``studio improve`` words a held-out question for a model this config trains: a TPO model is asked
        inside its thought prompt (as it was trained), others the task's prompt ("")."""
        return f"{__name__}:tpo_{config.tpo_prompt}_question" if config.tpo else ""

    @classmethod
    def eval_answer_for(cls, config: SelfRewardingConfig) -> str:
        """What ``studio improve`` scores of a held-out answer: a TPO model's response (the judge's view), else
        the whole answer ("")."""
        return f"{__name__}:tpo_{config.tpo_prompt}_response" if config.tpo else ""

    # -- parent side ----------------------------------------------------------------------------------------------
    @classmethod
    def _data(cls, store: Any, config: Any, limit: int) -> tuple[data.DataPreview, Any]:
        return data.self_rewarding_preview(store, cls.registered_name, config, limit)

    @classmethod
    def _write(cls, snapshot: Any, run: RunDir) -> None:
        data.write_self_rewarding(snapshot, run.path)

    @classmethod
    def resolve(
        cls, store: Store, config: SelfRewardingConfig, registry: ModelRegistry
    ) -> SelfRewardingConfig:
        if config.judge_model:
            registry.get(config.judge_model)  # unknown: a clear error before launch
        return config

    @classmethod
    def import_results(cls, store: Store, run: RunDir, state: dict[str, Any]) -> None:
        """Step 4: each finished iteration's prompts, answers, verdicts and (max, min) pairs into the store."""
        done = set(state.get("imported_iterations", []))
        for path in sorted(run.path.glob("iter_*/generated.jsonl")):
            t = int(path.parent.name.split("_")[1])
            if t not in done:
                import_iteration(store, run.id, t, read_jsonl(path), read_json(path.parent / "meta.json", {}))
                done.add(t)
        state["imported_iterations"] = sorted(done)

    # -- job side -------------------------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        cfg = self.config
        current, name, step = cfg, cfg.base_model, 0
        models: list[dict[str, Any]] = []
        notes: list[str] = []
        for t in range(cfg.iterations):
            try:
                entry, current, step = self.iteration(t, current, name, step)
            except Stop as stop:
                notes.append(str(stop))
                print(f"[studio] self-rewarding: {stop}", flush=True)
                break
            models.append(entry)
            name = entry["name"]
        if not models:
            raise InputError(f"no iteration completed: {'; '.join(notes)}")
        return {"models": models, "notes": notes, "steps": step, "metrics": {"iterations": len(models)}}

    def iteration(self, t: int, current: Any, name: str, step: int) -> tuple[dict[str, Any], Any, int]:
        """One iteration from M_t (``current``: its weights and adapter; ``name``); returns M_{t+1}."""
        it = self.run.iteration(t)
        it.mkdir(exist_ok=True)
        finished = self.finished_iteration(t, current)
        if finished:  # resumed: this iteration is complete
            return finished
        pairs = (
            read_jsonl(it / "pairs.jsonl")
            if (it / "generated.jsonl").exists()
            else self.generate(t, current, name, step)
        )
        if len(pairs) < self.config.min_pairs:
            raise Stop(
                f"iteration {t} gave {len(pairs)} pairs (< min_pairs={self.config.min_pairs}); stopping"
            )
        return self.update(t, current, name, step, pairs)

    # steps 0-3
    def generate(self, t: int, current: Any, name: str, step: int) -> list[dict[str, Any]]:
        from studio.backends.transformers_backend import TransformersBackend

        cfg = self.config
        policy = TransformersBackend(
            current.model_path, adapter=current.adapter_path or None, dtype=cfg.gen_dtype, model_name=name
        )
        judge, judge_backend, judge_name = self.judge(policy, name)
        try:
            self.check_agreement(t, judge, judge_backend, step)
            prompts = self.prompts(t, policy)
            answers = self.sample(policy, prompts)
            judged = [self.judged_text(a) for group in answers for a in group]  # TPO: the response only
            n = cfg.n_samples
            items = [_item(prompts[k // n], text, name) for k, text in enumerate(judged) if text is not None]
            found = iter(judge.judge(items, judge_backend))
            verdicts = [next(found) if text is not None else None for text in judged]
            meta = self.meta(t, step, judge_backend, prompts, judged, verdicts) if cfg.meta_rewarding else []
            return self.record(
                t, step, name, judge_name, judge, prompts, answers, judged, verdicts, len(meta)
            )
        finally:  # M_t's copy for generation goes; a judge_model stays cached for the next iteration
            policy.close()
            del policy
            gc.collect()

    def judge(self, policy: Any, name: str) -> tuple[Any, Any, str]:
        """(additive judge, its backend, the judging model's name): M_t itself unless ``judge_model`` is set."""
        from studio.judges import make_judge

        cfg = self.config
        judge = make_judge(
            "additive", {"n": cfg.judge_samples, "temperature": cfg.judge_temperature,
                         "max_new_tokens": cfg.judge_max_new_tokens, "seed": cfg.seed,
                         "score_mode": cfg.judge_score_mode, "structured": cfg.judge_structured},
        )  # fmt: skip
        if not cfg.judge_model:
            return judge, policy, name
        from studio.models import ModelRegistry
        from studio.settings import Settings

        # the job process's one registry (a job has no AppContext: it never opens the store)
        registry = ModelRegistry(Settings.load(data_dir=self.settings.get("data_dir")))
        return judge, registry.backend(cfg.judge_model), cfg.judge_model

    def check_agreement(self, t: int, judge: Any, backend: Any, step: int) -> None:
        humans = read_jsonl(self.run.path / "human_pairs.jsonl")
        if not humans:
            return
        result = human_agreement(judge, backend, humans)
        write_json(self.run.iteration(t) / "agreement.json", result)
        acc = result["accuracy"]
        self._log(step, {"judge/human_agreement": acc if acc is not None else float("nan"),
                         "judge/human_pairs": result["judged"]})  # fmt: skip
        print(f"[studio] iteration {t}: judge-human agreement {result}", flush=True)
        threshold = self.config.agreement_threshold
        if threshold and (acc is None or acc < threshold):
            msg = f"iteration {t}: judge-human agreement {acc} is below the threshold {threshold}"
            if self.config.agreement_action == "stop":
                raise Stop(msg)
            print(f"[studio] WARNING: {msg}", flush=True)

    def prompts(self, t: int, policy: Any) -> list[str]:
        """Step 0: the iteration's training prompts (with a task: its train questions, drawn per iteration)."""
        from studio.backends import GenParams
        from studio.training.self_instruct import write_prompts

        cfg = self.config
        if cfg.task:
            return data.task_questions(cfg.task, cfg.max_prompts, cfg.seed + cfg.start_iteration + t)
        seeds = [r["text"] for r in read_jsonl(self.run.path / "seed_prompts.jsonl")]
        rng = random.Random(cfg.seed + t)
        chosen = (
            rng.sample(seeds, min(len(seeds), cfg.max_prompts)) if cfg.prompt_source != "generate" else []
        )
        if cfg.prompt_source != "store":
            params = GenParams(cfg.prompt_max_new_tokens, cfg.prompt_temperature, 0.95, cfg.seed + t)
            written = write_prompts(policy, seeds, cfg.n_new_prompts, few_shot=cfg.few_shot, params=params,
                                    threshold=cfg.rouge_threshold, seed=cfg.seed + t)  # fmt: skip
            write_json(self.run.iteration(t) / "written_prompts.json", written.__dict__)
            chosen = written.kept + chosen
        if not chosen:
            raise Stop(f"iteration {t}: no usable prompt (see iter_{t}/written_prompts.json)")
        return chosen[: cfg.max_prompts]

    def sample(self, policy: Any, prompts: list[str]) -> list[list[str]]:
        """Step 1: N answers per prompt, in one batch."""
        from studio.backends import GenParams

        cfg = self.config
        params = GenParams(cfg.max_new_tokens, cfg.temperature, cfg.top_p, cfg.seed)
        if cfg.tpo and cfg.tpo_structured:
            params = params.replace(schema=thought_schema(cfg.max_new_tokens))
        convs = [[{"role": "user", "content": self.asked(p)}] for p in prompts for _ in range(cfg.n_samples)]
        texts = [c.text for c in policy.chat(convs, params)]
        return [texts[i * cfg.n_samples : (i + 1) * cfg.n_samples] for i in range(len(prompts))]

    def asked(self, prompt: str) -> str:
        """What the model is asked for ``prompt``: the prompt itself, or inside the thought prompt (TPO)."""
        return thought_prompt(prompt, self.config.tpo_prompt) if self.config.tpo else prompt

    def judged_text(self, answer: str) -> str | None:
        """What the judge sees of an answer: all of it, or with TPO its response (None: no response, dropped)."""
        if not self.config.tpo:
            return answer
        parts = split_thought(answer, self.config.tpo_prompt, self.config.tpo_structured)
        return parts[1] if parts else None

    def record(self, t: int, step: int, name: str, judge_name: str, judge: Any, prompts: list[str],
               answers: list[list[str]], judged: list[str | None], verdicts: list[Any],
               meta_pairs: int = 0) -> list[dict[str, Any]]:  # fmt: skip
        """Step 3 (pairs) and the files step 4 imports: generated.jsonl, pairs.jsonl, meta.json. A dropped TPO
        answer (no response) has no verdict: a failed one, with the reason, so the store keeps it."""
        cfg, it = self.config, self.run.iteration(t)
        n = cfg.n_samples
        rows, pairs = [], []
        for i, (prompt, group) in enumerate(zip(prompts, answers, strict=True)):
            vs, seen = verdicts[i * n : (i + 1) * n], judged[i * n : (i + 1) * n]
            pair = build_pairs(self.asked(prompt), group, [v.rating if v and v.ok else None for v in vs])
            pairs += [pair] if pair else []
            row = {"prompt": prompt, "answers": group, "pair": pair, "judged": seen,
                   "verdicts": [_verdict_row(v) for v in vs]}  # fmt: skip
            if cfg.tpo:
                split = [split_thought(a, cfg.tpo_prompt, cfg.tpo_structured) for a in group]
                row.update(asked=self.asked(prompt), thoughts=[s[0] if s else None for s in split],
                           responses=[s[1] if s else None for s in split])  # fmt: skip
            rows.append(row)
        write_json(it / "meta.json", {"policy": name, "judge": judge.name, "judge_model": judge_name,
                                      "judge_config": judge.config_dict(), "iteration": t, "task": cfg.task,
                                      "tpo": cfg.tpo, "meta_rewarding": cfg.meta_rewarding})  # fmt: skip
        write_jsonl(it / "pairs.jsonl", pairs)
        write_jsonl(it / "generated.jsonl", rows)  # last: its presence means the iteration's data is complete
        done = [v for v in verdicts if v is not None]
        ok = [v.rating for v in done if v.ok]
        dropped = len(verdicts) - len(done)
        self._log(step, {"selfreward/iteration": t, "selfreward/prompts": len(prompts),
                         "selfreward/answers": len(verdicts), "selfreward/failed_verdicts": len(done) - len(ok),
                         "selfreward/mean_score": sum(ok) / len(ok) if ok else float("nan"),
                         "selfreward/pairs": len(pairs),
                         **({"selfreward/tpo_dropped": dropped} if cfg.tpo else {}),
                         **({"selfreward/meta_pairs": meta_pairs} if cfg.meta_rewarding else {})})  # fmt: skip
        print(f"[studio] iteration {t}: {len(prompts)} prompts, {len(verdicts)} answers"
              f"{f' ({dropped} without a response, dropped)' if cfg.tpo else ''}, {len(done) - len(ok)} failed "
              f"verdicts, {len(pairs)} pairs{f', {meta_pairs} judge pairs' if cfg.meta_rewarding else ''}",
              flush=True)  # fmt: skip
        return pairs

    def meta(self, t: int, step: int, backend: Any, prompts: list[str], judged: list[str | None],
             verdicts: list[Any]) -> list[dict[str, Any]]:  # fmt: skip
        """Meta-Rewarding: judge pairs from the meta-judge's consistent preferences between two of M_t's own
        additive judgements of one answer; written to ``meta_pairs.jsonl``, counted in ``meta_counts.json``."""
        from studio.judges import make_judge
        from studio.judges.additive import paper_text
        from studio.judges.base import messages
        from studio.training.self_taught import meta_judge_pairs

        cfg, it, n = self.config, self.run.iteration(t), self.config.n_samples
        keys = [k for k, text in enumerate(judged) if text is not None]
        texts = verdicts
        if cfg.judge_score_mode != "text":  # the log-prob judge writes no judgement: sample text ones
            sampler = make_judge(
                "additive", {"n": cfg.meta_judgements, "temperature": cfg.judge_temperature,
                             "max_new_tokens": cfg.judge_max_new_tokens, "seed": cfg.seed + t,
                             "structured": True},
            )  # fmt: skip
            found = iter(sampler.judge([_item(prompts[k // n], judged[k], "") for k in keys], backend))
            texts = [next(found) if text is not None else None for text in judged]
        groups = {
            k: [{"text": paper_text(raw), "winner": score} for raw, score in
                zip(texts[k].raw, texts[k].scores.get("samples", []), strict=False)]
            for k in keys
        }  # fmt: skip
        pairs, counts = meta_judge_pairs(
            backend, groups,
            lambda k, a, b: PROMPTS.text("meta_judge_additive", question=prompts[k // n], response=judged[k],
                                         judgement_1=a, judgement_2=b),
            lambda k: messages("self_rewarding_additive", prompt=prompts[k // n], response=judged[k]),
            per_group=cfg.meta_pairs, max_new_tokens=cfg.meta_max_new_tokens, seed=cfg.seed + t,
            rng=random.Random(cfg.seed + t),
        )  # fmt: skip
        judgements = [j for g in groups.values() for j in g]
        counts = {**counts, "answers": len(keys), "judgements": len(judgements),
                  "scored_judgements": sum(j["winner"] is not None for j in judgements)}  # fmt: skip
        if not pairs:
            counts["reason"] = _no_meta_pairs(counts)
        write_json(it / "meta_counts.json", counts)
        write_jsonl(it / "meta_pairs.jsonl", pairs)
        self._log(step, {"selfreward/meta_candidates": counts["meta_candidates"],
                         "selfreward/meta_unreadable": counts["meta_unreadable"]})  # fmt: skip
        print(f"[studio] iteration {t}: meta-judge {counts}", flush=True)
        return pairs

    # step 5
    def update(self, t: int, current: Any, name: str, step: int, pairs: list[dict[str, Any]]) -> tuple:
        it = self.run.iteration(t)
        cfg = self.config
        judge_pairs = read_jsonl(it / "meta_pairs.jsonl") if cfg.meta_rewarding else []
        out = self.dpo_iteration(t, current, step, dpo_dataset(pairs, judge_pairs))
        meta = read_json(it / "meta.json", {})
        number = cfg.start_iteration + t + 1
        options = {"task": cfg.task} if cfg.task else {}
        options |= {"tpo": cfg.tpo_prompt} if cfg.tpo else {}
        options |= {"judge_pairs": len(judge_pairs)} if cfg.meta_rewarding else {}
        entry = self.model_entry(
            out, name=f"{cfg.output_name}-m{number}", parent=name, iteration=number,
            judge_model=meta.get("judge_model", name), pairs=len(pairs), **options,
        )  # fmt: skip
        return self.finish_iteration(t, current, step, out, entry)


def _no_meta_pairs(counts: dict[str, int]) -> str:
    """Why the meta-judge gave no judge pair, from its counts."""
    if not counts["scored_judgements"]:
        return "no judgement had a readable score"
    if not counts["meta_candidates"]:
        return "each answer's judgements all gave the same score: no two to compare"
    return (
        f"no consistent winner in {counts['meta_candidates']} comparisons: the meta-judge named the same position "
        f"in both orders (position bias) or was unreadable ({counts['meta_unreadable']} unreadable picks)"
    )


def _verdict_row(v: Any) -> dict[str, Any]:
    if v is None:  # a TPO answer without a response: never judged
        return {
            "ok": False,
            "rating": None,
            "scores": {"dropped": "no response after the thought"},
            "raw": [],
        }
    return {"ok": v.ok, "rating": v.rating, "scores": v.scores, "raw": v.raw}


def _item(prompt: str, answer: str, model: str) -> Any:
    from studio.judges import Candidate, JudgeItem

    return JudgeItem.single(prompt, Candidate(answer, model=model))


def import_iteration(
    store: Store, run_id: int, t: int, rows: list[dict[str, Any]], meta: dict[str, Any]
) -> None:
    """One iteration's prompts (prompt set ``self-rewarding-<run>-iter<t>``), answers (strategy
    ``self-rewarding``), additive verdicts and (max, min) pairs (pairwise verdicts by ``ai-judge``)."""
    prompt_set = f"self-rewarding-{run_id}-iter{t}"
    tag = {"iteration": t, "source": AI_JUDGE, "training_run": run_id}
    for row in rows:
        pid = store.add_prompt(row["prompt"], prompt_set)
        run_ids = [
            store.add_run(pid, meta.get("policy", "?"), "self-rewarding", answer, params=tag)
            for answer in row["answers"]
        ]
        for rid, v in zip(run_ids, row["verdicts"], strict=True):
            store.add_verdict(
                meta.get("judge", "additive"), "single", [rid], judge_model=meta.get("judge_model"),
                judge_config={**meta.get("judge_config", {}), **tag}, rating=v["rating"], scores=v["scores"],
                raw_output=json.dumps(v["raw"], ensure_ascii=False), ok=v["ok"], orders=["A"],
            )  # fmt: skip
        if row["pair"]:
            _store_pair(store, row["pair"], run_ids, meta, tag)


def _store_pair(
    store: Store, pair: dict[str, Any], run_ids: list[int], meta: dict[str, Any], tag: dict
) -> None:
    chosen, rejected = run_ids[pair["chosen_index"]], run_ids[pair["rejected_index"]]
    cid = store.add_comparison([chosen, rejected])
    store.add_verdict(
        AI_JUDGE, "pairwise", comparison_id=cid, judge_model=meta.get("judge_model"),
        judge_config={**tag, "rule": "highest vs lowest additive score; ties dropped"}, winner="A",
        scores={"chosen": pair["chosen_score"], "rejected": pair["rejected_score"]},
    )  # fmt: skip
