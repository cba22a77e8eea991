"""The Data and Judge tabs through ``gradio_client``, against the app launched in-process on a real DuckDB store
(seeded with Store verbs) and, for judging, the real default model: tables and filters, traces, export and
import, label edits and their audit, prompt-set guidelines, min labels and prompt status, and the dashboard with
Krippendorff's α beside Cohen's κ."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import datasets
import pytest

from storage import Store
from studio.strategies.base import Step, Trace

pytestmark = pytest.mark.slow

NO_FILTERS = ("", "", "", "", "", 100)  # prompt set, model, strategy, annotator, search, rows
MODEL = "smollm2-135m"
QUESTIONS = {"What is 2+2?": ("4", "5"), "What is the capital of France?": ("Paris", ">5</pre>"),
             "Which planet is the largest?": ("Jupiter", "Mars")}  # fmt: skip


@dataclass
class Seeded:
    runs: list[tuple[int, int]]  # (system1 run, bsm run) per prompt
    comparisons: list[int]
    votes: list[int]
    verdict: int
    step_label: int


def trace(question: str, strategy: str, answer: str) -> dict:
    """A BSM-shaped trace: a branch step with a child solve step, then a merge."""
    steps = [
        Step("b0", "branch", None, [{"role": "user", "content": f"<b>{question}</b>"}], {},
             output="criteria: <accuracy>", prompt_tokens=12, completion_tokens=5, latency_s=0.12, status="done"),
        Step("s1", "solve", "b0", [{"role": "user", "content": "judge accuracy"}], {}, label="accuracy",
             output="solved it", prompt_tokens=8, completion_tokens=3, latency_s=0.05, status="done",
             notes=["no score line; took the last number"]),
        Step("m0", "merge", None, [{"role": "user", "content": "merge"}], {}, output=answer,
             prompt_tokens=20, completion_tokens=4, latency_s=0.2, status="done"),
    ]  # fmt: skip
    return Trace(strategy, None, MODEL, question, {}, steps, final_answer=answer, latency_s=0.4).to_dict()


def seed(settings) -> Seeded:
    with Store(settings.db_path, data_dir=settings.data_dir) as store:
        prompts = store.add_prompts(list(QUESTIONS), "seed")
        runs, comparisons, votes = [], [], []
        for pid, (question, (good, bad)) in zip(prompts, QUESTIONS.items(), strict=True):
            a = store.add_run(
                pid, MODEL, "system1", good, trace=trace(question, "system1", good), tokens_out=4
            )
            b = store.add_run(pid, MODEL, "bsm", bad, trace=trace(question, "bsm", bad), tokens_out=9)
            cid = store.add_comparison([a, b])
            runs.append((a, b))
            comparisons.append(cid)
            votes.append(store.add_vote(cid, "A", "alice"))
            votes.append(store.add_vote(cid, "B" if good == "Jupiter" else "A", "bob", comment="bob's view"))
        verdict = store.add_verdict("pairwise", "pairwise", comparison_id=comparisons[0], winner="B",
                                    judge_model=MODEL, orders=["AB", "BA"])  # fmt: skip
        label = store.add_step_label(runs[0][1], "s1", "wrong", "alice", note="misread")
    return Seeded(runs, comparisons, votes, verdict, label)


def rows(table: dict) -> list[dict]:
    return [dict(zip(table["headers"], r, strict=True)) for r in table["data"]]


def stored(settings) -> Store:
    """A second connection to the app's DuckDB file (same process, so DuckDB shares the open database)."""
    return Store(settings.db_path, data_dir=settings.data_dir)


# -- Data tab -----------------------------------------------------------------------------------------------------
def test_tables_show_the_seeded_rows_and_filter(settings, launch) -> None:
    s = seed(settings)
    client = launch()
    stats, sets = client.predict(api_name="/data_stats")
    assert "**3** prompts · **6** runs" in stats and ["seed", "seed"] in sets["choices"]

    assert {r["text"] for r in rows(client.predict(*NO_FILTERS, api_name="/data_prompts"))} == set(QUESTIONS)
    runs = rows(client.predict(*NO_FILTERS, api_name="/data_runs"))
    assert sorted(r["id"] for r in runs) == sorted(i for pair in s.runs for i in pair)
    assert {r["answer"] for r in runs} == {a for pair in QUESTIONS.values() for a in pair}
    assert {r["prompt_set"] for r in runs} == {"seed"}
    votes = rows(client.predict(*NO_FILTERS, api_name="/data_votes"))
    assert sorted(v["id"] for v in votes) == sorted(s.votes)
    verdicts = rows(client.predict(*NO_FILTERS, api_name="/data_verdicts"))
    assert [(v["id"], v["judge"], v["winner"]) for v in verdicts] == [(s.verdict, "pairwise", "B")]
    labels = rows(client.predict(*NO_FILTERS, api_name="/data_step_labels"))
    assert [(x["id"], x["label"], x["note"]) for x in labels] == [(s.step_label, "wrong", "misread")]

    # filters: the store's (model, strategy, annotator) and the tab's own (prompt set, text search)
    bsm = rows(client.predict("", "", "bsm", "", "", 100, api_name="/data_runs"))
    assert {r["strategy"] for r in bsm} == {"bsm"} and len(bsm) == 3
    found = rows(client.predict("seed", "", "", "", "jupiter", 100, api_name="/data_runs"))
    assert [r["answer"] for r in found] == ["Jupiter"]
    bob = rows(client.predict("", "", "", "bob", "", 100, api_name="/data_votes"))
    assert len(bob) == 3 and {v["comment"] for v in bob} == {"bob's view"}
    assert rows(client.predict("", "", "", "bob", "paris", 100, api_name="/data_votes"))[0]["choice"] == "A"
    assert rows(client.predict("nope", "", "", "", "", 100, api_name="/data_runs")) == []
    assert len(rows(client.predict("", "", "", "", "", 2, api_name="/data_runs"))) == 2


def test_run_trace_shows_every_step_escaped_and_nested(settings, launch) -> None:
    s = seed(settings)
    client = launch()
    html = client.predict(s.runs[0][1], api_name="/data_run_trace")
    for text in ("branch", "solve", "merge", "solved it", "12 → 5 tokens", "0.12 s", "accuracy", "Prompt (1 message)",
                 "no score line; took the last number", "wrong (alice: misread)", "Final answer", ">5</pre>"):  # fmt: skip
        assert text in html, text
    assert "&lt;b&gt;What is 2+2?&lt;/b&gt;" in html and "<b>What is 2+2?</b>" not in html
    assert "criteria: &lt;accuracy&gt;" in html
    # the child step's box sits inside its parent's, before the next top-level step
    branch, solve, merge = (html.index(f'data-step="{k}"') for k in ("b0", "s1", "m0"))
    assert branch < solve < merge
    assert html[branch:merge].count('class="trace-step"') == 2 and "margin-left:22px" in html[solve:merge]
    with pytest.raises(Exception, match="no run with id 999") as err:
        client.predict(999, api_name="/data_run_trace")
    assert "Traceback" not in str(err.value)


def test_export_gives_a_file_that_datasets_loads(settings, launch) -> None:
    seed(settings)
    client = launch()
    path, message = client.predict("dpo", "parquet", "any", False, False, "seed", "", "", "",
                                   api_name="/data_export")  # fmt: skip
    ds = datasets.load_dataset("parquet", data_files=path, split="train")
    with stored(settings) as store:
        expected = store.to_dataset("dpo")
    assert len(ds) == len(expected) > 0 and {"prompt", "chosen", "rejected"} <= set(ds.column_names)
    assert sorted(ds["chosen"]) == sorted(expected["chosen"])
    assert f"Exported **{len(ds)}** dpo rows" in message
    assert list((settings.data_dir / "exports").glob("dpo-*.parquet")), "the export is kept in the data dir"

    path, _ = client.predict(
        "kto", "jsonl", "human", False, False, "", "", "", "bob", api_name="/data_export"
    )
    lines = [json.loads(x) for x in Path(path).read_text().splitlines()]
    assert lines and all({"prompt", "completion", "label"} <= set(x) for x in lines)


def test_import_of_a_malformed_file_says_which_row_and_stores_nothing(settings, launch, tmp_path) -> None:
    from gradio_client import handle_file

    seed(settings)
    client = launch()
    before, _ = client.predict(api_name="/data_stats")
    bad = tmp_path / "prefs.jsonl"
    good_row = {"prompt": "Q?", "chosen": "yes", "rejected": "no"}
    bad.write_text(json.dumps(good_row) + "\n" + json.dumps({"prompt": "Q2?", "chosen": "x"}) + "\n")
    with pytest.raises(
        Exception, match=r"prefs.jsonl: 1 invalid row\(s\): row 2: 'rejected' is missing"
    ) as err:
        client.predict(handle_file(str(bad)), "", "", api_name="/data_import")
    assert "Traceback" not in str(err.value)
    after, _ = client.predict(api_name="/data_stats")
    assert after == before

    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(good_row) + "\n")
    message = client.predict(handle_file(str(good)), "imported", "", api_name="/data_import")
    assert "Imported **1** preference pairs into prompt set `imported`" in message
    prompts = rows(client.predict("imported", "", "", "", "", 100, api_name="/data_prompts"))
    assert [p["text"] for p in prompts] == ["Q?"]


def test_delete_vote_and_edit_step_labels(settings, launch) -> None:
    s = seed(settings)
    client = launch()
    assert client.predict(s.votes[0], api_name="/data_delete_vote") == f"Deleted vote {s.votes[0]}."
    with stored(settings) as store:
        assert s.votes[0] not in {v["id"] for v in store.list_votes(limit=None)}
        assert len(store.list_votes(limit=None)) == len(s.votes) - 1
    with pytest.raises(Exception, match=f"no vote with id {s.votes[0]}"):
        client.predict(s.votes[0], api_name="/data_delete_vote")

    client.predict(s.step_label, "good", "fine after all", api_name="/data_update_step_label")
    with stored(settings) as store:
        [label] = store.list_step_labels()
        assert (label["label"], label["note"]) == ("good", "fine after all")
    client.predict(s.step_label, api_name="/data_delete_step_label")
    with stored(settings) as store:
        assert store.list_step_labels() == []


def test_prompt_set_guidelines_min_labels_and_status(settings, launch) -> None:
    seed(settings)  # three prompts, each labelled by alice and bob
    with stored(settings) as store:
        extra = store.add_prompt("Nobody labelled this?", "seed")
        store.skip_prompt(extra, "carol")
    client = launch()
    assert "seed" in [v for _, v in client.predict(api_name="/data_open")[3]["choices"]]
    text, preview, need, summary, table = client.predict("seed", api_name="/data_prompt_set")
    assert (text, need) == ("", 1) and "No guidelines yet" in preview
    assert "**4** prompts · 3 complete · 0 in progress · 1 unlabelled" in summary
    status = {r["prompt_id"]: r for r in rows(table)}
    assert (status[extra]["status"], status[extra]["labels"], status[extra]["skips"]) == ("unlabelled", 0, 1)
    assert {r["labels"] for p, r in status.items() if p != extra} == {2}

    guide = "# How to judge\n\nPrefer the **correct** answer; a tie when both are right."
    message, summary, table = client.predict("seed", guide, 3, api_name="/data_save_prompt_set")
    assert message == "Saved the guidelines of `seed` (min labels 3)."
    assert "0 complete · 3 in progress · 1 unlabelled" in summary  # two labels each, three wanted
    assert {r["min_labels"] for r in rows(table)} == {3}
    assert client.predict("seed", api_name="/data_prompt_set")[:3] == (guide, guide, 3)  # and the preview
    with stored(settings) as store:
        assert store.get_prompt_set("seed") == {"name": "seed", "guidelines": guide, "min_labels": 3}

    with pytest.raises(Exception, match="less than minimum value 1"):  # the number box's own bound
        client.predict("seed", guide, 0, api_name="/data_save_prompt_set")
    with pytest.raises(Exception, match="min labels is a whole number of annotators, at least 1"):
        client.predict("seed", guide, None, api_name="/data_save_prompt_set")
    with pytest.raises(Exception, match="pick a prompt set"):
        client.predict(None, guide, 2, api_name="/data_save_prompt_set")


def test_label_audit_shows_replaced_and_deleted_labels(settings, launch) -> None:
    s = seed(settings)
    with stored(settings) as store:
        replaced = store.add_vote(s.comparisons[0], "B", "alice")  # alice changes her mind
        assert replaced == s.votes[0]  # her label is edited in place
    client = launch()
    assert rows(client.predict(*NO_FILTERS, api_name="/data_label_audit"))[0]["action"] == "replace"
    client.predict(s.votes[1], api_name="/data_delete_vote")  # bob's first vote
    client.predict(s.step_label, "good", "fine after all", api_name="/data_update_step_label")
    audit = rows(client.predict(*NO_FILTERS, api_name="/data_label_audit"))
    assert [(a["kind"], a["action"], a["annotator"]) for a in audit] == [
        ("step_label", "replace", "alice"), ("vote", "delete", "bob"), ("vote", "replace", "alice")
    ]  # fmt: skip
    assert json.loads(audit[2]["old"])["choice"] == "A" and json.loads(audit[2]["new"])["choice"] == "B"
    assert audit[1]["new"] == "" and json.loads(audit[1]["old"])["choice"] == "A"
    assert audit[1]["comparison_id"] == s.comparisons[0] and audit[1]["row_id"] == s.votes[1]
    only_bob = rows(client.predict("", "", "", "bob", "", 100, api_name="/data_label_audit"))
    assert [a["action"] for a in only_bob] == ["delete"]


# -- Judge tab ----------------------------------------------------------------------------------------------------
def test_dashboard_on_an_empty_store_says_so(settings, launch) -> None:
    client = launch()
    status, rater, *_, board, disagreements, alpha, agree, lineage = client.predict(
        "", False, "held-out", api_name="/judge_dashboard"
    )
    assert status.startswith("No votes or verdicts yet")
    assert board["data"] == [] and disagreements["data"] == [] and alpha["data"] == []
    assert agree["data"] == [] and lineage["data"] == []
    note, raw, styled, coefficients = client.predict(api_name="/judge_boards")
    assert "No votes or verdicts yet" in note and raw["data"] == styled["data"] == coefficients["data"] == []
    assert rows(client.predict(*NO_FILTERS, api_name="/data_runs")) == []


def test_judge_run_stores_verdicts_and_the_dashboard_shows_them(settings, launch) -> None:
    s = seed(settings)
    client = launch()
    status, rater, *plots, board, disagreements, alpha, agree, _ = client.predict(
        "", True, "held-out", api_name="/judge_dashboard"
    )
    assert "6 human votes · 1 verdicts" in status and rater["value"] == f"pairwise@{MODEL}"
    # alice A, A, A and bob A, A, B: by hand, 6 values (5 A, 1 B), one disagreeing unit; nominal α =
    # 1 - (n - 1) * (o_AB + o_BA) / (2 n_A n_B) = 1 - 5 * 2 / (2 * 5 * 1) = 0
    [nominal] = rows(alpha)
    assert (nominal["labels"], nominal["level"], nominal["alpha"]) == ("pairwise votes", "nominal", 0.0)
    assert (nominal["items"], nominal["annotators"]) == (3, 2) and nominal["95% CI"].startswith("[")
    assert len(plots) == 4 and all(p for p in plots)
    assert {r["board"] for r in rows(board)} == {"human", "judge", "combined"}
    [row] = rows(disagreements)  # the seeded pairwise verdict says B where both people said A
    assert (row["run_a"], row["run_b"], row["human"], row["judge"]) == (*s.runs[0], "A", "B")
    table = {(r["x"], r["y"]): r for r in rows(agree)}
    judged = table[("human", f"pairwise@{MODEL}")]
    assert (judged["pairs"], judged["S1"], judged["split"], judged["failed verdicts"]) == (
        2,
        "0.00 [0.00, 0.00]",
        "",
        "0/1",
    )
    assert judged["swap-flip"] == "n/a"  # the seeded verdict has no per-order picks

    args = (["logprob"], MODEL, "comparisons", "all", "seed", 0, 8, "")
    summary = client.predict(*args, api_name="/judge_run")
    assert (
        "**logprob** on `smollm2-135m`" in summary
        and "3 items in scope, 0 already judged, 3 judged" in summary
    )
    with stored(settings) as store:
        verdicts = store.list_verdicts(judge="logprob", limit=None)
    assert sorted(v["comparison_id"] for v in verdicts) == sorted(s.comparisons)
    assert all(v["ok"] and v["winner"] in ("A", "B", "tie") and v["judge_model"] == MODEL for v in verdicts)
    assert "3 already judged, 0 judged" in client.predict(*args, api_name="/judge_run")  # resumes
    # a verdict's trace opens in the Data tab like a run's: the default (pmi) log-prob judge's four scores of the
    # real model, each answer after the question and after the content-free "N/A"
    html = client.predict(verdicts[0]["id"], api_name="/data_verdict_trace")
    assert f"Verdict {verdicts[0]['id']}" in html and html.count('class="trace-step"') == 4
    assert "answer 0, question" in html and "answer 1, content-free" in html

    status, rater, *_, agree, _ = client.predict("", False, "held-out", api_name="/judge_dashboard")
    assert "4 verdicts by 2 judge config(s)" in status
    [logprob] = [r for r in rows(agree) if r["y"].startswith("logprob@")]
    assert logprob["pairs"] == 6 and logprob["swap-flip"] == "n/a"  # pmi scores each answer alone: no orders
    assert any(c[1].startswith(f"logprob@{MODEL}") for c in rater["choices"])

    with pytest.raises(Exception, match="judge settings are JSON"):
        client.predict(["additive"], MODEL, "comparisons", "all", "", 0, 8, "{n: 1", api_name="/judge_run")
    with pytest.raises(Exception, match="has no setting bogus"):
        client.predict(["logprob"], MODEL, "comparisons", "all", "", 0, 8, '{"logprob": {"bogus": 1}}',
                       api_name="/judge_run")  # fmt: skip


def test_alpha_for_rankings_is_ordinal(settings, launch) -> None:
    """Two annotators rank three answers on two prompts: ordinal α, beside the pairwise one."""
    with stored(settings) as store:
        for q in ("Name a prime.", "Name a colour."):
            pid = store.add_prompt(q, "ranked")
            runs = [store.add_run(pid, MODEL, s, f"{s} says") for s in ("system1", "cot", "bsm")]
            cid = store.add_comparison(runs)
            store.add_ranking(cid, [1, 2, 3], "alice")
            store.add_ranking(cid, [1, 2, 3], "bob")
    client = launch()
    *_, alpha, _, _ = client.predict("", False, "held-out", api_name="/judge_dashboard")
    [ranked] = rows(alpha)
    assert (ranked["labels"], ranked["level"]) == ("rankings", "ordinal")
    assert ranked["alpha"] == 1.0  # the same rankings: full agreement
    assert (ranked["items"], ranked["annotators"]) == (2, 2)
    with stored(settings) as store:
        store.add_ranking(cid, [3, 2, 1], "bob")  # bob reverses the second ranking (replacing his label)
    *_, alpha, _, _ = client.predict("", False, "held-out", api_name="/judge_dashboard")
    assert rows(alpha)[0]["alpha"] < 0.5


def test_cli_agreement_prints_alpha(settings, capsys) -> None:
    from studio.cli import main

    seed(settings)  # alice A, A, A and bob A, A, B: nominal α 0 (worked out in the dashboard test above)
    data = ["--data-dir", str(settings.data_dir)]
    assert main(["agreement", "--n-boot", "50", *data]) == 0
    out = capsys.readouterr().out
    assert "Krippendorff's alpha" in out
    [line] = [x for x in out.splitlines() if x.strip().startswith("pairwise votes")]
    assert line.split()[2:5] == ["nominal", "alpha", "0.00"] and "items 3  annotators 2" in line
    assert main(["agreement", "--json", "--n-boot", "50", *data]) == 0
    [alpha] = json.loads(capsys.readouterr().out)["alpha"]
    assert (alpha["level"], alpha["alpha"], alpha["n_items"], alpha["n_annotators"]) == ("nominal", 0.0, 3, 2)


def test_dashboard_scores_a_trained_judge_on_held_out_votes_with_lineage(settings, launch) -> None:
    """A reward model trained on one prompt set (a real run dir's snapshot) and a judge v1 trained from v0: the
    dashboard scores the reward model on the other votes by default, shows both splits side by side on request,
    and the lineage table puts v0 and v1 on the same vote pairs. A reward model cannot run a text judge."""
    from studio.models import ModelRegistry, ModelSpec
    from tests.test_heldout import BASE, QUESTIONS, TRAIN_SET, seed, train_run, verdicts

    settings.ensure_dirs()
    with stored(settings) as store:
        s = seed(store)
        train_run(store, settings, 1)
        verdicts(store, "reward_model", "rm", s, right_on_train=True, right_on_test=False)
        verdicts(store, "pairwise", BASE, s, right_on_train=False, right_on_test=False)
        verdicts(store, "pairwise", "judge-v1", s, right_on_train=True, right_on_test=True)
    registry = ModelRegistry(settings)
    registry.add(
        ModelSpec("rm", path=str(settings.models_dir / BASE), kind="reward", parent=BASE, training_run="1")
    )
    (settings.runs_dir / "2").mkdir()
    registry.add(ModelSpec("judge-v1", path=str(settings.models_dir / BASE), parent=BASE, training_run="2"))
    n_train, n_test = 2 * len(QUESTIONS[TRAIN_SET]), 2 * (len(s.test))
    client = launch()

    status, rater, *_, agree, lineage = client.predict("", False, "held-out", api_name="/judge_dashboard")
    assert (
        "Judge models trained in the studio: `judge-v1`, `rm`" in status
        and "outside their training" in status
    )
    table = {(r["y"].split("#")[0], r["split"]): r for r in rows(agree) if r["x"] == "human"}
    held = table[("reward_model@rm", "held-out")]
    assert (held["pairs"], held["training pairs left out"], held["S1"]) == (
        n_test,
        n_train,
        "0.00 [0.00, 0.00]",
    )
    assert held["swap-flip"] == "0.00 (0/3)"
    assert not any(split.startswith("TRAIN") for _, split in table)  # never by default
    assert table[(f"pairwise@{BASE}", "")]["pairs"] == n_train + n_test  # not trained here: all its votes
    line = {(r["judge"].split("#")[0], r["version"]): r for r in rows(lineage)}
    v0, v1 = line[("pairwise@judge-v1", "v0")], line[("pairwise@judge-v1", "v1")]
    both = n_train + n_test  # judge v1 was trained on no vote: all are held out
    assert (v0["model"], v1["model"], v0["pairs"], v1["pairs"]) == (BASE, "judge-v1", both, both)
    assert v0["S1"].startswith("0.00") and v1["S1"].startswith("1.00")

    *_, agree, _ = client.predict("", False, "both", api_name="/judge_dashboard")
    splits = {
        r["split"]: r for r in rows(agree) if r["x"] == "human" and r["y"].startswith("reward_model@rm")
    }
    assert set(splits) == {"held-out", "TRAIN (not its agreement)"}
    assert splits["TRAIN (not its agreement)"]["S1"] == "1.00 [1.00, 1.00]"
    status, *_, agree, _ = client.predict("", False, "all", api_name="/judge_dashboard")
    [pooled] = [r for r in rows(agree) if r["x"] == "human" and r["y"].startswith("reward_model@rm")]
    assert pooled["split"] == "all (incl. training)" and pooled["pairs"] == n_train + n_test
    assert "pooled with their training votes: not their agreement" in status

    note, raw, styled, coefficients = client.predict(api_name="/judge_boards")
    assert {r["rater"] for r in rows(raw)} >= {"human"} and rows(styled) and rows(coefficients)

    with pytest.raises(Exception, match="'rm' is a reward model: it scores answers") as err:
        client.predict(["pairwise"], "rm", "comparisons", "all", "", 0, 8, "", api_name="/judge_run")
    assert "Traceback" not in str(err.value)
    with pytest.raises(Exception, match="reward_model scores with a reward model"):
        client.predict(["reward_model"], MODEL, "comparisons", "all", "", 0, 8, "", api_name="/judge_run")
    with pytest.raises(Exception, match="no training job|job 7"):
        client.predict(7, api_name="/train_judge_heldout")


def test_the_win_rate_heatmap_of_one_contestant_is_a_note() -> None:
    """Imported pairs are all (imported, imported): a board with no two contestants has no matrix to draw."""
    from components.judge import ONE_CONTESTANT, heatmap_figure

    fig = heatmap_figure({"human": {"labels": [], "values": []}})
    assert ONE_CONTESTANT in " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
