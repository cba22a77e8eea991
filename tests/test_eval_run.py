"""The eval harness end to end on the real default model: 2 strategies on 5 base questions of each shipped set
(greedy, 32 new tokens per step), resume, the `studio eval` CLI, and the Eval tab through gradio_client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from storage import Store
from studio.eval import EvalSpec, load_dataset, parse_methods, run_eval
from studio.strategies import StrategyParams
from tests.servers import studio_server

pytestmark = pytest.mark.slow
PARAMS = StrategyParams(max_new_tokens=32)
PLAN = {  # the set, the comparison it was written for, the paper-shaped columns it reports
    "cove_lists": ("system1,cove:factored", ["precision (micro)", "recall (micro)", "pos. per question"]),
    "s2a_opinions": (
        "system1,s2a",
        ["no opinion (oracle)", "suggest incorrect", "gap (with opinion − no opinion)"],
    ),
    "s2a_distractors": ("system1,s2a:relevance", ["no distractor (oracle)", "with distractor"]),
}


@pytest.fixture()
def store(settings):
    s = Store(settings.db_path, data_dir=settings.data_dir)
    yield s
    s.close()


@pytest.mark.parametrize("name", list(PLAN))
def test_two_strategies_on_five_items_then_resume(name: str, store: Store, backend) -> None:
    methods, columns = PLAN[name]
    dataset = load_dataset(name, limit=5)
    spec = EvalSpec(parse_methods(methods), (backend,), PARAMS)
    out = run_eval(dataset, spec, store)
    planned = 2 * len(dataset.items)
    assert (out.total, out.ran, out.failed, out.skipped) == (planned, planned, 0, 0), out.errors
    runs = store.list_runs(limit=None)
    assert len(runs) == planned and {r["model"] for r in runs} == {"smollm2-135m"}
    assert {p["prompt_set"] for p in store.list_prompts(limit=None)} == {f"eval:{name}"}
    assert all(r["params"]["eval"]["scores"] == out_row["scores"]
               for r, out_row in zip(sorted(runs, key=lambda r: r["id"]), sorted(out.rows, key=lambda r: r["run_id"]), strict=True))  # fmt: skip
    report = out.report(n_boot=200)
    assert [r.method for r in report.rows] == [m.label for m in spec.methods]
    assert all(c in report.header() for c in columns)
    files = report.save(out.dir)
    assert (
        files["plot"].stat().st_size > 1000 and "| system1 | smollm2-135m |" in files["markdown"].read_text()
    )
    print(f"\n{out.summary()}\n{report.to_markdown()}")

    again = run_eval(dataset, spec, store)
    assert (again.skipped, again.ran) == (planned, 0), "resume skips every finished run"
    assert len(store.list_runs(limit=None)) == planned and len(again.rows) == planned


def studio(settings, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "STUDIO_HOME": str(settings.data_dir),
        "STUDIO_THREADS": os.environ.get("STUDIO_THREADS", "1"),
    }
    return subprocess.run(
        [sys.executable, "-m", "studio", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_cli_runs_resumes_and_exports(settings, tmp_path: Path) -> None:
    args = ["eval", "--dataset", "s2a_distractors", "--strategies", "system1", "--limit", "2",
            "--max-new-tokens", "16", "--n-boot", "100", "--out", str(tmp_path / "out"), "--json"]  # fmt: skip
    r = studio(settings, *args)
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    assert (body["total"], body["ran"], body["skipped"]) == (4, 4, 0)
    assert "[4/4] system1 @ smollm2-135m" in r.stderr
    assert body["report"]["rows"][0]["method"] == "system1"
    assert {Path(p).name for p in body["files"].values()} == {
        "table.csv",
        "table.md",
        "plot.png",
        "report.json",
    }
    assert len(Path(body["results"]).read_text().splitlines()) == 4
    r = studio(settings, *args[:-1])  # the table this time, not JSON
    assert r.returncode == 0, r.stderr
    assert "4 runs planned, 4 already done, 0 run now" in r.stdout
    assert "| system1 | smollm2-135m | 4 |" in r.stdout


def test_cli_eval_prints_parse_failure_rates_structured_vs_free(settings, tmp_path: Path) -> None:
    base = ["eval", "--dataset", "cove_lists", "--strategies", "cove:factored", "--limit", "1", "--max-questions",
            "2", "--max-new-tokens", "128", "--n-boot", "50", *(f"--step-max-tokens={n}=32" for n in ("baseline",
            "execute_verification", "final_verified"))]  # fmt: skip
    reports = {}
    for mode in ("--no-structured", "--structured"):
        r = studio(settings, *base, mode, "--out", str(tmp_path / mode), "--json")
        assert r.returncode == 0, r.stderr
        body = json.loads(r.stdout)
        assert body["ran"] == 1
        reports[mode] = body["report"]["rows"][0]["parse_failures"]
    for mode, stats in reports.items():
        plan = stats["plan_verifications"]
        assert plan["parsed"] == 1 and plan["failed"] in (0, 1) and plan["rate"] == plan["failed"], mode
    assert reports["--structured"]["plan_verifications"]["failed"] == 0, "the schema makes the plan parse"
    r = studio(settings, *base, "--structured")  # resumed: the table, with the parse-failure table under it
    assert r.returncode == 0, r.stderr
    assert (
        "**Parse failures**" in r.stdout
        and "| cove:factored | smollm2-135m | plan_verifications | 0/1 | 0% |" in r.stdout
    )
    print(r.stdout)


def test_report_parse_failure_rates_per_method_and_step() -> None:
    from studio.eval import build_report

    ds = load_dataset("cove_lists", limit=2)
    rows = [
        {
            "item": i.id,
            "method": "cove:factored",
            "strategy": "cove",
            "variant": "factored",
            "model": "m",
            "params_hash": "h",
            "scores": {},
            "parse": parse,
        }
        for i, parse in zip(
            ds.items, ({"plan_verifications": [1, 1]}, {"plan_verifications": [1, 0]}), strict=True
        )
    ]
    rows.append({**rows[0], "method": "system1", "strategy": "system1", "variant": None})  # fmt: skip
    del rows[-1]["parse"]  # a results line written before parse counts existed
    report = build_report(ds, rows, n_boot=20)
    cove, s1 = report.rows
    assert [(p.step, p.parsed, p.failed, p.rate) for p in cove.parse] == [("plan_verifications", 2, 1, 0.5)]
    assert s1.parse == [] and report.parse_table() == [
        ["cove:factored", "m", "plan_verifications", "1/2", "50%"]
    ]
    assert report.to_dict()["rows"][0]["parse_failures"] == {
        "plan_verifications": {"parsed": 2, "failed": 1, "rate": 0.5}
    }
    assert any(
        r["metric"] == "parse_fail@plan_verifications" and r["value"] == 0.5 for r in report.long_rows()
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval"], "name a dataset with --dataset"),
        (["eval", "--dataset", "nope"], "no dataset 'nope'"),
        (["eval", "--dataset", "cove_lists", "--strategies", "system1,magic"], "unknown strategy 'magic'"),
        (["eval", "--dataset", "cove_lists", "--metrics", "bleu"], "unknown metric bleu"),
        (["eval", "--dataset", "cove_lists", "--model", "nope"], "known models: smollm2-135m"),
    ],
)
def test_cli_errors_are_one_line(settings, args: list[str], message: str) -> None:
    r = studio(settings, *args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_eval_tab_through_gradio_client(settings, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    threads = {"STUDIO_THREADS": os.environ.get("STUDIO_THREADS", "1")}
    with studio_server(settings.data_dir, tmp_path / "serve.log", env=threads) as (url, _proc):
        client = Client(url, verbose=False)
        summary, table, _plot, csv_path, md_path = client.predict(
            dataset="s2a_opinions", upload=None, strategies=["system1"], models=["smollm2-135m"],
            limit=1, max_new_tokens=16, judge="none", api_name="/eval_run",
        )  # fmt: skip
        assert "4 runs planned, 0 already done, 4 run now" in summary
        assert table["headers"][:3] == ["method", "model", "n"] and "suggest incorrect" in table["headers"]
        assert table["data"][0][:3] == ["system1", "smollm2-135m", "4"]
        assert Path(csv_path).read_text().startswith("dataset,method,")
        assert "| system1 | smollm2-135m | 4 |" in Path(md_path).read_text()
        again = client.predict(
            "s2a_opinions", None, ["system1"], ["smollm2-135m"], 1, 16, "none", api_name="/eval_run"
        )
        assert "4 already done, 0 run now" in again[0]
        mine = tmp_path / "mine.jsonl"
        mine.write_text('{"question": "What is the capital of France?", "answer": "Paris"}\n')
        up = client.predict(
            "", handle_file(str(mine)), ["system1"], ["smollm2-135m"], 0, 16, "none", api_name="/eval_run"
        )
        assert "mine: 1 runs planned" in up[0] and "contains answer" in up[1]["headers"]
        with pytest.raises(Exception, match="no dataset 'nope'"):
            client.predict("nope", None, ["system1"], ["smollm2-135m"], 1, 16, "none", api_name="/eval_run")
        with pytest.raises(Exception, match="name at least one strategy"):
            client.predict("cove_lists", None, [], ["smollm2-135m"], 1, 16, "none", api_name="/eval_run")
    with Store(settings.db_path) as s:
        assert len(s.list_runs(limit=None)) == 5 and "eval:mine" in s.prompt_sets()
