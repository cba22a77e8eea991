"""Self-consistency, Rephrase-and-Respond and structured step outputs on the real default model, through the
`studio` CLI (in-process) and the API. Exact votes and parsing edge cases are in test_strategies_edge.py."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from studio.api import run_strategy
from studio.backends.base import Backend
from studio.context import AppContext

pytestmark = pytest.mark.slow
HAS_STRUCTURED = (Path(__file__).resolve().parents[1] / "studio" / "backends" / "structured.py").exists()


def cli(settings, *argv: str) -> str:
    """Run `studio ARGV` in-process on the settings' data dir; its stdout."""
    from studio.cli import build_parser

    args = build_parser().parse_args(list(argv))
    out = io.StringIO()
    assert args.func(args, AppContext(settings), out=out) == 0
    return out.getvalue()


def test_strategies_lists_sc_and_rar(settings) -> None:
    rows = {r["name"]: r for r in json.loads(cli(settings, "strategies", "--json"))}
    assert rows["sc"]["variants"][0] == "cot" and rows["sc"]["default_variant"] == "cot"
    assert rows["rar"]["variants"] == ["one_step", "two_step"] and "2311.04205" in rows["rar"]["source"]
    assert "2203.11171" in rows["sc"]["source"]


def test_sc_json_prints_every_path_and_the_vote_and_the_paths_ran_as_one_batch(settings) -> None:
    out = cli(settings, "run", "--strategy", "sc", "--samples", "3", "--max-new-tokens", "32", "--json",
              "What is 12 + 7?")  # fmt: skip
    trace = json.loads(out)
    assert (trace["strategy"], trace["variant"]) == ("sc", "cot")
    steps = trace["steps"]
    assert [s["label"] for s in steps] == ["path 1", "path 2", "path 3"]
    assert {(s["round"], s["batch_size"]) for s in steps} == {(1, 3)}, "the three paths are one batch"
    assert {s["params"]["temperature"] for s in steps} == {0.7}
    assert all("parse_ok" in s["parsed"] for s in steps)  # CoT's Answer: marker, found or not
    vote = trace["summary"]["vote"]
    assert vote["samples"] == 3 and [p["path"] for p in vote["paths"]] == [1, 2, 3]
    assert [p["steps"] for p in vote["paths"]] == [[s["id"]] for s in steps]
    assert sum(vote["tally"].values()) == sum(1 for p in vote["paths"] if p["normalized"])
    top = max(vote["tally"].values())
    assert vote["share"] == pytest.approx(top / 3) and trace["final_answer"] == vote["answer"].strip()
    assert f"majority {top}/3 ({top / 3:.0%})" in trace["notes"]
    print("\n" + json.dumps(vote, indent=1))


def test_sc_tree_prints_the_paths_then_the_tally(settings) -> None:
    text = cli(settings, "run", "-s", "sc", "-v", "system1", "--samples", "2", "--sc-temperature", "0.9",
               "--max-new-tokens", "16", "What is the capital of France?")  # fmt: skip
    assert text.count("● answer  “path") == 2 and "batch of 2" in text
    assert (
        text.index("Self-consistency vote over 2 paths")
        < text.index("tally:")
        < text.index("Final answer (sc/")
    )


@pytest.mark.parametrize("variant", ["one_step", "two_step"])
def test_rar_variants_on_the_real_model(backend: Backend, variant: str) -> None:
    q = "Was Abraham Lincoln born in an even year?"
    r = run_strategy(q, "rar", variant, backend, {"max_new_tokens": 32})
    assert r.error is None and r.final_answer.strip()
    if variant == "one_step":
        assert [s.name for s in r.trace.steps] == ["answer"]
        assert (
            r.trace.steps[0].messages[0]["content"].endswith("Rephrase and expand the question, and respond.")
        )
        return
    rephrase, answer = r.trace.steps
    assert (rephrase.name, answer.name, answer.parent) == ("rephrase", "answer", rephrase.id)
    assert rephrase.parsed["rephrased"] and rephrase.parsed["rephrased"] in answer.messages[0]["content"]
    assert answer.messages[0]["content"].startswith(f"(original) {q}\n(rephrased) ")


@pytest.mark.skipif(
    not HAS_STRUCTURED, reason="studio/backends/structured.py (the structured backend) is absent"
)
def test_structured_run_constrains_the_parsed_steps(settings) -> None:
    # 160 tokens (or the model's lower plan cap) leave room for 2 questions of at most 123 characters (the
    # schema's bound) and the JSON; the other steps are capped lower (a cap only lowers max_new_tokens)
    caps = [
        f"--step-max-tokens={n}=48"
        for n in ("baseline", "execute_verification", "cross_check", "final_verified")
    ]
    out = cli(settings, "run", "-s", "cove", "-v", "factor_revise", "--structured", "--max-questions", "2",
              "--max-new-tokens", "160", *caps, "--json", "Name some politicians who were born in Boston.")  # fmt: skip
    trace = json.loads(out)
    parsed = [s for s in trace["steps"] if s["name"] in ("plan_verifications", "cross_check")]
    assert parsed and all(s["constrained"] and s["params"]["schema"] for s in parsed)
    assert all(isinstance(s["parsed"]["parse_ok"], bool) for s in parsed)
    plan = parsed[0]
    assert plan["parsed"]["parse_ok"] is True, plan["output"]
    assert all(q.endswith("?") for q in plan["parsed"]["questions"])
    free = [s for s in trace["steps"] if s["name"] in ("baseline", "execute_verification", "final_verified")]
    assert free and not any(s["constrained"] or s["params"].get("schema") for s in free)
    # the given caps win over the model's; the plan keeps the lower of 160 and the model's own plan cap
    assert {s["params"]["max_new_tokens"] for s in free} == {48} and plan["params"]["max_new_tokens"] <= 160
    print("\n" + "\n".join(f"{s['name']}: {s['output'][:120]!r}" for s in parsed))


@pytest.mark.skipif(
    not HAS_STRUCTURED, reason="studio/backends/structured.py (the structured backend) is absent"
)
def test_structured_s2a_rewrite_reads_both_sections(backend: Backend) -> None:
    q = "I think the answer is Sydney, but I'm really not sure. What is the capital of Australia?"
    r = run_strategy(q, "s2a", None, backend, {"max_new_tokens": 64, "structured": True})
    rewrite = r.trace.by_name("rewrite")[0]
    assert rewrite.constrained and json.loads(rewrite.output)
    assert rewrite.parsed["found_query"] and rewrite.parsed["parse_ok"] is True, rewrite.output
    assert rewrite.parsed["query"] in r.trace.by_name("answer")[0].messages[0]["content"]


def test_flags_name_only_what_was_given() -> None:
    from studio.cli import build_parser
    from studio.cli.run import run_params

    def given(*argv: str) -> dict:
        return run_params(build_parser().parse_args(["run", *argv, "q"]))

    assert given() == {}
    assert given("--temperature", "0.5", "--no-structured") == {"temperature": 0.5, "structured": False}
    assert given("--samples", "3", "--sc-temperature", "0.6", "--repetition-penalty", "1.2",
                 "--no-repeat-ngram-size", "4", "--step-max-tokens", "merge=160", "--step-max-tokens", "solve=96",
                 "--breadth", "1", "--depth", "2", "--k", "2", "--n-evaluate", "1", "--value-threshold", "0.5",
                 "--structured") == {
        "samples": 3, "sc_temperature": 0.6, "repetition_penalty": 1.2, "no_repeat_ngram_size": 4,
        "step_max_tokens": {"merge": 160, "solve": 96}, "breadth": 1, "depth": 2, "k": 2, "n_evaluate": 1,
        "value_threshold": 0.5, "structured": True,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--step-max-tokens", "merge"], "takes STEP=N"),
        (["--step-max-tokens", "nope=3"], "unknown step 'nope'"),
        (["--step-max-tokens", "merge=x"], "whole number"),
        (["--step-max-tokens", "merge=0"], "step_max_tokens['merge'] must be"),
        (["--samples", "0"], "samples must be >= 1"),
        (["--sc-temperature", "-1"], "sc_temperature must be >= 0"),
        (["--repetition-penalty", "9"], "repetition_penalty"),
    ],
)
def test_bad_flags_are_input_errors(argv: list[str], message: str) -> None:
    from studio.cli import build_parser
    from studio.cli.run import run_params
    from studio.errors import InputError

    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        run_params(build_parser().parse_args(["run", *argv, "q"]))
