"""Batch judging over a real DuckDB store: scopes, batching, progress, resume, failed verdicts; the agreement,
bias, disagreement and leaderboard figures from stored votes and verdicts; the CLI commands."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from storage import Store
from studio.backends.base import Backend, Completion, Conversation, GenParams
from studio.cli import main
from studio.errors import BackendError
from studio.judges import JudgeItem, combine_orders, make_judge, to_caller_label
from studio.judges.logprob import p_a_better, winner_from_prob
from studio.judges.pairwise import parse_pairwise
from studio.judging import (
    HUMAN,
    Scope,
    agreement,
    biases,
    disagreements,
    judge_scope,
    leaderboards,
    snapshot,
    targets,
    verdict_from_row,
)

_SHOWN = re.compile(r"\[The Start of Assistant ([AB])'s Answer\]\n(.*?)\n\[The End", re.DOTALL)


class Scripted(Backend):
    """A judge model that prefers the longer answer in both orders, or whatever ``script`` says."""

    supports_choice_probs = True

    def __init__(self, name: str = "judge-model", script=None, fail: bool = False) -> None:
        self.model_name, self.script, self.fail = name, script, fail
        self.batches: list[int] = []

    def chat(self, conversations: Sequence[Conversation], params: GenParams) -> list[Completion]:
        if self.fail:
            raise BackendError("the judge server is down")
        self.batches.append(len(conversations))
        return [Completion(self._say(c[-1]["content"]), 1, 1, 0.0) for c in conversations]

    def _say(self, text: str) -> str:
        if self.script:
            return self.script(text)
        shown = dict(_SHOWN.findall(text))
        return "[[A]]" if len(shown["A"]) > len(shown["B"]) else "[[B]]"

    def stream(self, conversation, params):  # pragma: no cover - not used
        yield from ()


@pytest.fixture()
def store(tmp_path: Path):
    with Store(tmp_path / "data" / "studio.duckdb") as s:
        yield s


def populate(store: Store) -> dict[str, int]:
    """Three prompts, seven runs, four comparisons (one 3-way ranking, one unvoted), five human votes."""
    p1 = store.add_prompt("What is 2+2?", "math")
    p2 = store.add_prompt("Name a colour.", "general")
    p3 = store.add_prompt("What is the capital of France?", "general")
    r = {
        "r1": store.add_run(p1, "m1", "system1", "4"),
        "r2": store.add_run(p1, "m2", "cot", "2+2 equals 4."),
        "r3": store.add_run(p2, "m1", "system1", "Blue."),
        "r4": store.add_run(p2, "m2", "cot", "Red is a colour."),
        "r5": store.add_run(p3, "m1", "system1", "Paris."),
        "r6": store.add_run(p3, "m2", "cot", "The capital is Paris."),
        "r7": store.add_run(p3, "m1", "cove", "Paris, France's capital city.", variant="factored"),
    }
    c1 = store.add_comparison([r["r1"], r["r2"]])
    store.add_vote(c1, "B", "alice")
    store.add_vote(c1, "B", "bob")
    c2 = store.add_comparison([r["r3"], r["r4"]])
    store.add_vote(c2, "A", "alice")
    store.add_comparison([r["r5"], r["r6"]])  # unvoted
    c4 = store.add_comparison([r["r5"], r["r6"], r["r7"]])
    store.add_ranking(c4, [2, 1, 3], "alice")
    return r


def test_targets_per_scope(store):
    r = populate(store)
    snap = snapshot(store)
    pairs = [t.run_ids for t in targets(snap, Scope(), "pairwise")]
    # C3's pair (r5, r6) reappears in the 3-way C4 and is judged once
    assert pairs == [
        (r["r1"], r["r2"]),
        (r["r3"], r["r4"]),
        (r["r5"], r["r6"]),
        (r["r5"], r["r7"]),
        (r["r6"], r["r7"]),
    ]
    assert len(targets(snap, Scope(labelled=True), "pairwise")) == 5  # C1, C2, and C4 brings (r5, r6) back
    assert [t.run_ids for t in targets(snap, Scope(labelled=False), "pairwise")] == [(r["r5"], r["r6"])]
    assert len(targets(snap, Scope(prompt_set="math"), "pairwise")) == 1
    assert len(targets(snap, Scope(strategy="cove"), "pairwise")) == 2  # 'cove' matches 'cove:factored'
    assert len(targets(snap, Scope(limit=2), "pairwise")) == 2
    singles = targets(snap, Scope(), "single")
    assert sorted(t.run_ids[0] for t in singles) == sorted(r.values())
    runs_scope = targets(snap, Scope(source="runs", prompt_set="general"), "pairwise")
    assert len(runs_scope) == 1 + 3  # every pair of runs per prompt


def test_judge_scope_batches_stores_and_resumes(store):
    r = populate(store)
    backend = Scripted()
    judge = make_judge("pairwise")
    seen: list[tuple[int, int]] = []
    res = judge_scope(store, backend, judge, batch_size=2, progress=lambda d, t, m: seen.append((d, t)))
    assert (res.total, res.skipped, res.judged, res.ok, res.failed) == (5, 0, 5, 5, 0)
    assert backend.batches == [4, 4, 2]  # 2 items x 2 orders per batch
    assert seen == [(0, 5), (2, 5), (4, 5), (5, 5)]
    rows = store.list_verdicts(limit=100)
    assert len(rows) == 5 and all(row["judge_config"]["config_hash"] == res.config_hash for row in rows)
    first = verdict_from_row(min(rows, key=lambda row: row["id"]))
    assert first.winner == "B" and first.orders == ["AB", "BA"] and first.order_winners == ["B", "B"]
    assert first.raw == ["[[B]]", "[[A]]"] and first.key.run_ids == (r["r1"], r["r2"])
    assert first.config["max_new_tokens"] == 512 and first.config_hash == res.config_hash

    again = judge_scope(store, backend, judge)
    assert (again.total, again.skipped, again.judged) == (5, 5, 0)
    other = judge_scope(store, backend, make_judge("pairwise", {"max_new_tokens": 64}), Scope(limit=1))
    assert other.judged == 1 and other.config_hash != res.config_hash
    by_other_model = judge_scope(store, Scripted("m1"), judge, Scope(prompt_set="math"))
    assert by_other_model.judged == 1 and by_other_model.self_judged == 1  # m1 judged its own answer


def test_failed_verdicts_are_stored_counted_and_skipped_on_resume(store):
    populate(store)
    backend = Scripted(script=lambda text: "I refuse to choose.")
    res = judge_scope(store, backend, make_judge("pairwise"))
    assert (res.ok, res.failed) == (0, 5)
    rows = store.list_verdicts(limit=100)
    assert all(not row["ok"] and row["winner"] is None for row in rows)
    v = verdict_from_row(rows[0])
    assert v.raw == ["I refuse to choose.", "I refuse to choose."] and "[[A]]" in v.error
    assert judge_scope(store, backend, make_judge("pairwise")).judged == 0
    (human_vs_judge,) = [a for a in agreement(snapshot(store), n_boot=10) if a["y"] != HUMAN]
    assert (human_vs_judge["failed_verdicts"], human_vs_judge["verdicts"], human_vs_judge["pairs"]) == (
        5,
        5,
        0,
    )


def test_a_backend_failure_stops_the_job_without_storing_bogus_verdicts(store):
    populate(store)
    with pytest.raises(BackendError):
        judge_scope(store, Scripted(fail=True), make_judge("pairwise"))
    assert store.list_verdicts() == []


def test_single_judge_rates_each_run_once(store):
    populate(store)
    res = judge_scope(store, Scripted(script=lambda t: "Fine. Score: 3"), make_judge("additive", {"n": 2}))
    assert (res.total, res.ok) == (7, 7)
    row = store.list_verdicts(limit=1)[0]
    assert row["mode"] == "single" and row["rating"] == 3.0 and len(row["run_ids"]) == 1


def test_agreement_biases_disagreements_and_leaderboard_by_hand(store):
    r = populate(store)
    judge_scope(store, Scripted(), make_judge("pairwise"))  # the longer answer wins every pair
    snap = snapshot(store)
    results = {(a["x"], a["y"]): a for a in agreement(snap, by="model", n_boot=50)}
    rater = next(y for x, y in results if y != HUMAN)
    hh, hj = results[(HUMAN, HUMAN)], results[(HUMAN, rater)]
    assert hh["pairs"] == 1 and hh["s1"][0]["value"] == 1.0  # alice and bob agree on C1
    # judge says B everywhere; humans: C1 B, B; C2 A; C4 (r5,r6) B, (r5,r7) A, (r6,r7) A -> 3 of 6
    assert hj["pairs"] == 6 and hj["s1"][0]["value"] == pytest.approx(0.5)
    assert hj["s2"][0]["value"] == pytest.approx(0.5)
    assert hj["confusion"] == [[0, 3, 0], [0, 3, 0], [0, 0, 0]]
    # C4: alice ranks (r5, r6, r7) as 2, 1, 3; the judge's wins give r7 2, r6 1, r5 0: tau = -1/3
    assert hj["ranking_tau"] == {"tau": pytest.approx(-1 / 3), "n": 1}
    groups = {e["group"]: e for e in hj["s1"]}
    assert set(groups) == {"all", "m1", "m2"}

    bias = {b["rater"]: b for b in biases(snap, n_boot=20)}
    assert bias[HUMAN]["n"] == 3  # pairwise votes only
    assert bias[HUMAN]["position_bias"][0]["value"] == pytest.approx(1 / 3)
    assert bias[rater]["position_bias"][0]["value"] == pytest.approx(0.5)  # one pick per order
    assert bias[rater]["length_bias"][0]["value"] == 1.0 and bias[rater]["swap_flip"][0]["value"] == 0.0

    rows = disagreements(snap, rater)
    assert {(d["run_a"], d["run_b"]) for d in rows} == {
        (r["r3"], r["r4"]),
        (r["r5"], r["r7"]),
        (r["r6"], r["r7"]),
    }
    assert rows[0]["human"] == "A" and rows[0]["judge"] == "B" and rows[0]["comparison_ids"]

    out = leaderboards(snap, combined=True, n_boot=20)
    assert set(out["boards"]) == {"human", "judge", "combined"}
    judge_board = out["boards"]["judge"]
    assert judge_board[0]["contestant"] in ("m1 / cove:factored", "m2 / cot")
    assert sum(row["matches"] for row in out["boards"]["human"]) == 2 * 6
    assert out["win_rates"]["judge"]["labels"] == sorted(out["win_rates"]["judge"]["labels"])
    assert out["kendall_tau"]["n"] == 3


# -- the real default model -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_model_judges_the_store(store, backend):
    """The stored verdicts are the model's: the same pairs judged directly, in the same order and batch, give the
    same probabilities, each stored under its runs in the order shown (A = the first run)."""
    r = populate(store)
    judge = make_judge("logprob", {"variant": "pair"})
    res = judge_scope(store, backend, judge, Scope(labelled=True), batch_size=8)
    assert (res.judged, res.ok, res.failed) == (5, 5, 0)
    pairs = [("r1", "r2"), ("r3", "r4"), ("r5", "r6"), ("r5", "r7"), ("r6", "r7")]
    runs = {key: store.get_run(r[key]) for key in r}
    direct = judge.judge(
        [
            JudgeItem.pair(
                store.get_prompt(runs[a]["prompt_id"])["text"], runs[a]["answer"], runs[b]["answer"]
            )
            for a, b in pairs
        ],
        backend,
    )
    stored = {tuple(row["run_ids"]): verdict_from_row(row) for row in store.list_verdicts(limit=None)}
    assert set(stored) == {(r[a], r[b]) for a, b in pairs}
    for (a, b), want in zip(pairs, direct, strict=True):
        got = stored[(r[a], r[b])]
        assert got.prob_a == pytest.approx(want.prob_a, abs=1e-4) and got.winner == want.winner
        assert got.scores["probs"]["AB"] == pytest.approx(want.scores["probs"]["AB"], abs=1e-4)
        probs = got.scores["probs"]
        assert got.prob_a == pytest.approx(p_a_better(probs["AB"], probs["BA"]))
        assert got.winner == winner_from_prob(got.prob_a, judge.config.tie_margin)

    res = judge_scope(
        store, backend, make_judge("pairwise", {"max_new_tokens": 24}), Scope(prompt_set="math")
    )
    [row] = store.list_verdicts(judge="pairwise", limit=None)
    v = verdict_from_row(row)
    assert res.judged == 1 and tuple(row["run_ids"]) == (r["r1"], r["r2"]) and len(v.raw) == 2
    picks = [parse_pairwise(text) for text in v.raw]  # the stored raw outputs decide the stored winner
    assert v.winner == combine_orders(
        [to_caller_label(p, o) for p, o in zip(picks, ("AB", "BA"), strict=True)]
    )
    assert (res.ok, res.failed) == ((1, 0) if v.winner is not None else (0, 1)) and v.ok == (
        v.winner is not None
    )


@pytest.mark.slow
def test_cli_judge_agreement_leaderboard(settings, capsys):
    with Store(settings.db_path, data_dir=settings.data_dir) as s:
        populate(s)
    data = ["--data-dir", str(settings.data_dir)]
    assert main(["judge", "--judge", "logprob", "--labelled", "--json", *data]) == 0
    job = json.loads(capsys.readouterr().out)
    assert job["judged"] == 5 and job["judge_model"] == "smollm2-135m"
    assert main(["judge", "--judge", "logprob", "--labelled", *data]) == 0
    assert "5 already judged" in capsys.readouterr().out
    assert main(["agreement", "--json", "--n-boot", "20", "--by", "strategy", *data]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {a["x"] for a in out["agreement"]} == {HUMAN} and len(out["biases"]) == 2
    assert main(["agreement", "--n-boot", "20", *data]) == 0
    assert "S1" in capsys.readouterr().out
    assert main(["leaderboard", "--json", "--combined", "--n-boot", "10", *data]) == 0
    assert set(json.loads(capsys.readouterr().out)["boards"]) == {"human", "judge", "combined"}
    assert main(["leaderboard", "--matrix", "--n-boot", "10", *data]) == 0
    assert "human board" in capsys.readouterr().out
    assert main(["judge", "--judge", "pairwise", "--set", "colour=red", *data]) == 2
    assert "no setting" in capsys.readouterr().err


def test_cli_judge_list_shows_every_judge_with_its_settings_and_source(capsys):
    assert main(["judge", "--list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert {"reward_model", "dpo_implicit", "single", "logprob", "pairwise", "additive"} <= set(rows)
    assert rows["single"]["mode"] == "single" and rows["reward_model"]["mode"] == "pairwise"
    assert "tie_margin" in rows["reward_model"]["settings"] and "beta" in rows["dpo_implicit"]["settings"]
    assert all(r["source"] and r["description"] for r in rows.values())
    assert main(["judge", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("reward_model", "dpo_implicit", "single"):
        [head] = [line for line in out.splitlines() if line.startswith(f"{name} (")]
        block = out[out.index(head) :].splitlines()
        assert block[1].startswith("    ") and block[2].startswith("    settings: ")


def tiny_reward_model(tokenizer_dir: Path, out: Path) -> Path:
    """A real Hugging Face sequence-classification dir with one label: a one-layer Llama (random weights, seeded)
    on the default model's tokenizer, as anyone could register with kind reward."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, num_labels=1,
                         pad_token_id=tok.pad_token_id)  # fmt: skip
    LlamaForSequenceClassification(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.mark.slow
def test_cli_reward_model_judge_agreement_and_style_boards(settings, capsys, tmp_path):
    from studio.models import ModelRegistry, ModelSpec

    with Store(settings.db_path, data_dir=settings.data_dir) as s:
        populate(s)
    path = tiny_reward_model(settings.models_dir / "smollm2-135m", tmp_path / "tiny-rm")
    ModelRegistry(settings).add(ModelSpec("tiny-rm", backend="reward-model", path=str(path)))
    data = ["--data-dir", str(settings.data_dir)]
    assert main(["judge", "--judge", "reward_model", "--model", "tiny-rm", "--labelled", *data]) == 0
    out = capsys.readouterr().out
    assert "reward_model on tiny-rm" in out and "5 judged: 5 ok, 0 failed" in out
    assert "swap-flip rate: - (no verdict read in both orders)" in out  # one order: position cannot matter
    with Store(settings.db_path, data_dir=settings.data_dir) as s:
        rows = s.list_verdicts(judge="reward_model", limit=None)
    assert len(rows) == 5 and all(0 < r["prob_a"] < 1 and r["judge_model"] == "tiny-rm" for r in rows)

    # a reward model for a text judge, and a chat model for reward_model: refused before anything loads
    assert main(["judge", "--judge", "pairwise", "--model", "tiny-rm", *data]) == 2
    assert "'tiny-rm' is a reward model" in capsys.readouterr().err
    assert main(["judge", "--judge", "reward_model", *data]) == 2
    assert "reward_model scores with a reward model" in capsys.readouterr().err

    assert main(["agreement", "--n-boot", "20", *data]) == 0
    [line] = [x for x in capsys.readouterr().out.splitlines() if "human vs reward_model@tiny-rm" in x]
    assert "6 pairs" in line and "held-out" not in line  # not trained in the studio: nothing to leave out
    assert main(["leaderboard", "--style", "--n-boot", "10", *data]) == 0
    out = capsys.readouterr().out
    assert "human: raw vs style-controlled Bradley-Terry" in out and "| style-controlled" in out
    assert main(["leaderboard", "--style", "--json", "--n-boot", "10", *data]) == 0
    style = json.loads(capsys.readouterr().out)["style"]["raters"]
    assert "human" in style and {"raw", "style", "coefficients", "matches"} <= set(style["human"])
