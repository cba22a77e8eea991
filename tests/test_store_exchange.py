"""Exports (Parquet, JSONL, datasets, the Hub path) and imports of TRL preference sets, and the store CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import datasets
import pytest

from storage import Filters, Store, StoreError
from studio.cli import main

ROOT = Path(__file__).resolve().parents[1]
NASTY = ["quote ' \" ; --", "nul \x00 byte", "emoji 😀", "RTL \u202eשלום\u202c", "sep \u2028 line\nbreak"]


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture()
def store(data_dir: Path):
    with Store(data_dir / "studio.duckdb") as s:
        yield s


def seed(store: Store) -> None:
    """Three prompts with awkward text; pairwise votes, a ranking and ratings."""
    for i, text in enumerate(NASTY[:3]):
        pid = store.add_prompt(f"Q{i}: {text}")
        a, b, c = (store.add_run(pid, "m", "s", f"answer {i}{x} {NASTY[(i + 3) % 5]}") for x in "abc")
        store.add_vote(store.add_comparison([a, b]), "A", "alice")
        store.add_ranking(store.add_comparison([a, b, c]), [1, 3, 2], "bob")
        store.add_verdict("j", "single", [a], rating=9)
        store.add_verdict("j", "single", [b], rating=2)


def load_parquet(path: Path) -> datasets.Dataset:
    return datasets.load_dataset("parquet", data_files=str(path), split="train")


@pytest.mark.parametrize("conversational", [False, True])
@pytest.mark.parametrize("kind", ["dpo", "kto", "rm"])
def test_parquet_export_loads_with_datasets(
    store: Store, data_dir: Path, kind: str, conversational: bool
) -> None:
    seed(store)
    result = store.export(kind, "parquet", f"exports/{kind}.parquet", conversational=conversational)
    assert Path(result.path) == (data_dir / "exports" / f"{kind}.parquet").resolve()
    loaded = load_parquet(Path(result.path))
    expected = store.to_dataset(kind, conversational=conversational)
    assert result.rows == len(loaded) == len(expected) > 0
    assert loaded.to_list() == expected.to_list()
    if kind == "dpo":
        assert len(loaded) == 9  # per prompt: a>b (alice), a>c, c>b, a>b (bob; deduplicated)... 3 distinct
    if conversational:
        assert loaded[0]["prompt"][0]["role"] == "user"


def test_text_survives_parquet_and_jsonl(store: Store, data_dir: Path) -> None:
    seed(store)
    expected = store.to_dataset("dpo").to_list()
    assert any("\x00" in row["prompt"] for row in expected)
    for fmt, loader in (("parquet", "parquet"), ("jsonl", "json")):
        result = store.export("dpo", fmt, f"dpo.{fmt}")
        loaded = datasets.load_dataset(loader, data_files=result.path, split="train")
        assert loaded.to_list() == expected, fmt
    lines = (data_dir / "dpo.jsonl").read_bytes().split(b"\n")
    assert [json.loads(line) for line in lines if line] == expected


def test_hf_export_round_trips(store: Store, data_dir: Path) -> None:
    seed(store)
    result = store.export("kto", "hf", "kto_ds", conversational=True)
    loaded = datasets.load_from_disk(result.path)
    assert loaded.to_list() == store.to_dataset("kto", conversational=True).to_list()
    assert set(loaded["label"]) == {True, False}


def test_export_filters_apply(store: Store) -> None:
    seed(store)
    assert store.export("dpo", "jsonl", "alice.jsonl", Filters(annotator="alice")).rows == 3


def test_export_paths_stay_in_the_data_dir(store: Store, data_dir: Path, tmp_path: Path) -> None:
    seed(store)
    outside = tmp_path / "elsewhere" / "dpo.parquet"
    with pytest.raises(StoreError, match="outside the data dir"):
        store.export("dpo", "parquet", outside)
    with pytest.raises(StoreError, match="outside the data dir"):
        store.export("dpo", "parquet", "../escape.parquet")
    (data_dir / "link").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(StoreError, match="outside the data dir"):
        store.export("dpo", "parquet", "link/escape.parquet")
    assert not outside.exists()
    assert store.export("dpo", "parquet", outside, allow_outside=True).rows == 9
    assert outside.exists()
    with pytest.raises(StoreError, match="format is one of"):
        store.export("dpo", "csv", "x.csv")


def test_push_to_hub_needs_a_token(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(store)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(StoreError, match="needs a token: set HF_TOKEN"):
        store.export("dpo", "hub", "someone/prefs")


def test_push_to_hub_is_called_with_the_token(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(store)
    calls = []
    monkeypatch.setattr(
        datasets.Dataset, "push_to_hub", lambda self, repo, **kw: calls.append((len(self), repo, kw))
    )
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    result = store.export("dpo", "hub", "someone/prefs")
    assert calls == [(9, "someone/prefs", {"token": "hf_test", "private": True})]
    assert (result.fmt, result.path, result.rows) == ("hub", "someone/prefs", 9)
    with pytest.raises(StoreError, match="not a Hub dataset id"):
        store.export("dpo", "hub", "bad repo id!")


def test_push_to_hub_without_network_is_a_clear_error(tmp_path: Path) -> None:
    """The real ``push_to_hub`` against an endpoint that refuses connections (no network here)."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from storage import Store, StoreError
        s = Store({str(tmp_path / "studio.duckdb")!r})
        p = s.add_prompt("q")
        a, b = s.add_run(p, "m", "s", "x"), s.add_run(p, "m", "s", "y")
        s.add_vote(s.add_comparison([a, b]), "A", "u")
        try:
            s.export("dpo", "hub", "someone/prefs")
        except StoreError as e:
            print("STORE ERROR:", e)
        """
    )
    env = {
        **os.environ,
        "HF_TOKEN": "hf_fake",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    env.pop("HF_HUB_OFFLINE", None)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert "STORE ERROR: push to the Hugging Face Hub (someone/prefs) failed:" in out.stdout, (
        out.stdout + out.stderr
    )
    assert "Traceback" not in out.stdout + out.stderr
    assert len(out.stdout.strip().splitlines()) == 1


# -- import -----------------------------------------------------------------------------------------------------


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


def test_import_jsonl_then_export(store: Store, tmp_path: Path) -> None:
    rows = [{"prompt": f"p{i} {t}", "chosen": f"good {t}", "rejected": f"bad {t}", "extra": i} for i, t in
            enumerate(NASTY)]  # fmt: skip
    result = store.import_preferences(write_jsonl(tmp_path / "prefs.jsonl", rows))
    assert (result.rows, result.prompt_set, result.annotator) == (5, "import:prefs", "import:prefs.jsonl")
    assert store.to_dataset("dpo").to_list() == [
        {k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows
    ]
    assert store.stats()["runs"] == 10
    assert store.list_runs(limit=1)[0]["strategy"] == "imported"


def test_import_conversational_with_multi_turn_prompt(store: Store, tmp_path: Path) -> None:
    multi = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    rows = [
        {"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "Hello!"}],
         "rejected": [{"role": "assistant", "content": "Go away."}]},
        {"prompt": multi, "chosen": [{"role": "assistant", "content": "4"}],
         "rejected": [{"role": "assistant", "content": "22"}]},
    ]  # fmt: skip
    store.import_preferences(write_jsonl(tmp_path / "conv.jsonl", rows))
    assert store.to_dataset("dpo", conversational=True).to_list() == rows
    standard = store.to_dataset("dpo").to_list()
    assert standard[0] == {"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."}
    assert standard[1]["prompt"] == "system: Be brief.\n\nuser: 2+2?"


def test_import_parquet_and_hf_dir_round_trip(store: Store, data_dir: Path, tmp_path: Path) -> None:
    seed(store)
    expected = store.to_dataset("dpo", conversational=True).to_list()
    parquet = store.export("dpo", "parquet", "conv.parquet", conversational=True).path
    hf_dir = store.export("dpo", "hf", "conv_ds", conversational=True).path
    for source in (parquet, hf_dir):
        with Store(tmp_path / f"fresh-{Path(source).name}.duckdb") as fresh:
            assert fresh.import_preferences(source).rows == len(expected)
            assert fresh.to_dataset("dpo", conversational=True).to_list() == expected


def test_import_annotator_is_the_importing_user_or_the_source(store: Store, tmp_path: Path) -> None:
    """#18: bob's import was stored as alice's votes. The file's annotator column is never read, and with
    ``imported_by`` the votes carry bob's name or the ``import:<file>`` source, never another person's."""
    rows = [{"prompt": "q", "chosen": "a", "rejected": "b", "annotator": "alice"}]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    with pytest.raises(StoreError, match="imported labels carry your own name \\(bob\\) or the source "
                                         "import:p.jsonl, not 'alice'"):  # fmt: skip
        store.import_preferences(path, annotator="alice", imported_by="bob")
    assert store.stats()["votes"] == 0
    result = store.import_preferences(path, imported_by="bob")
    assert (result.annotator, result.imported_by) == ("import:p.jsonl", "bob")
    assert store.import_preferences(path, annotator="bob", imported_by="bob").annotator == "bob"
    assert sorted(v["annotator"] for v in store.list_votes()) == ["bob", "import:p.jsonl"]
    assert {r["params"]["imported_by"] for r in store.list_runs()} == {"bob"}
    with pytest.raises(StoreError, match="imported_by must name the importing user"):
        store.import_preferences(path, imported_by=" ")
    # without imported_by (the local admin's CLI) the file still never names the annotator
    assert store.import_preferences(path).annotator == "import:p.jsonl"
    assert "alice" not in {v["annotator"] for v in store.list_votes()}


def test_import_twice_deduplicates_pairs(store: Store, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}])
    store.import_preferences(path)
    store.import_preferences(path)
    assert store.stats()["prompts"] == 1 and store.stats()["votes"] == 2
    assert len(store.to_dataset("dpo")) == 1


def _import_many(store: Store, tmp_path: Path, n: int = 240, seed: int = 0, name: str = "many") -> list[dict]:
    rows = [
        {"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}", "reference": str(i)}
        for i in range(n)
    ]
    store.import_preferences(write_jsonl(tmp_path / f"{name}.jsonl", rows), seed=seed)
    return rows


def _chosen_positions(store: Store, prompt_set: str) -> dict[str, int]:
    """Prompt text -> the chosen ('good ...') answer's screen position, read back from the store."""
    prompts = {p["id"]: p["text"] for p in store.list_prompts(prompt_set, limit=None)}
    answers = {r["id"]: r["answer"] for r in store.list_runs(limit=None)}
    return {
        prompts[c["prompt_id"]]: [answers[r].startswith("good") for r in c["run_ids"]].index(True)
        for c in store.list_comparisons(limit=None)
        if c["prompt_id"] in prompts
    }


def test_import_shuffles_positions_so_always_a_scores_half(store: Store, tmp_path: Path) -> None:
    rows = _import_many(store, tmp_path)
    votes = {v["comparison_id"]: v["choice"] for v in store.list_votes(limit=None)}
    assert len(votes) == len(rows) == 240
    for cid in votes:  # a judge that always picks the first answer
        store.add_verdict("always_a", "pairwise", comparison_id=cid, winner="A", orders=["AB"])
    verdicts = {v["comparison_id"]: v["winner"] for v in store.list_verdicts(judge="always_a", limit=None)}
    agree = sum(verdicts[c] == choice for c, choice in votes.items()) / len(votes)
    assert 0.35 <= agree <= 0.65
    # the vote names the chosen answer's position, and the export still knows which answer was chosen
    positions = _chosen_positions(store, "import:many")
    by_cmp = {c["id"]: c["prompt_id"] for c in store.list_comparisons(limit=None)}
    texts = {p["id"]: p["text"] for p in store.list_prompts(limit=None)}
    assert all(votes[c] == "AB"[positions[texts[by_cmp[c]]]] for c in votes)
    assert 0 < sum(positions.values()) < len(rows)
    human = store.to_dataset("dpo", Filters(source="human")).to_list()
    exported = {(r["prompt"], r["chosen"], r["rejected"]) for r in human}
    assert exported == {(r["prompt"], r["chosen"], r["rejected"]) for r in rows}
    assert {r["params"]["seed"] for r in store.list_runs(limit=None)} == {0}
    # run ids follow the shown order, so figures that label a pair by its smaller run id see the shuffle too
    # (the chosen answer is the smaller id in about half of the pairs, not in all of them)
    cmps = store.list_comparisons(limit=None)
    assert all(c["run_ids"] == sorted(c["run_ids"]) for c in cmps)
    assert 0.35 <= sum(votes[c["id"]] == "A" for c in cmps) / len(cmps) <= 0.65


def test_import_positions_follow_the_seed(data_dir: Path, tmp_path: Path) -> None:
    def positions(name: str, seed: int) -> dict[str, int]:
        with Store(data_dir / f"{name}.duckdb") as s:
            _import_many(s, tmp_path, n=200, seed=seed)
            return _chosen_positions(s, "import:many")

    first = positions("a", 7)
    assert positions("b", 7) == first  # the same seed gives the same positions
    assert positions("c", 8) != first


def test_import_fills_prompt_reference(store: Store, tmp_path: Path) -> None:
    rows = [{"prompt": "2+2?", "chosen": "4", "rejected": "5", "reference": "4"},
            {"prompt": "hi", "chosen": "hello", "rejected": "go", "reference": ""},
            {"prompt": "3*3?", "chosen": "9", "rejected": "6", "reference": 9}]  # fmt: skip
    store.import_preferences(write_jsonl(tmp_path / "r.jsonl", rows))
    refs = {p["text"]: p["reference"] for p in store.list_prompts()}
    assert refs == {"2+2?": "4", "hi": None, "3*3?": "9"}
    pid = next(p["id"] for p in store.list_prompts() if p["text"] == "2+2?")
    assert store.get_prompt(pid)["reference"] == "4"
    # a file without the column leaves references alone; one with it fills only empty ones
    store.import_preferences(
        write_jsonl(tmp_path / "r2.jsonl", [{"prompt": "x", "chosen": "a", "rejected": "b"}])
    )
    assert store.list_prompts("import:r2")[0]["reference"] is None
    bad = write_jsonl(
        tmp_path / "bad.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b", "reference": [1]}]
    )
    with pytest.raises(StoreError, match="row 1: 'reference' must be a string"):
        store.import_preferences(bad)
    with pytest.raises(StoreError, match="seed must be a whole number"):
        store.import_preferences(tmp_path / "r.jsonl", seed="x")  # type: ignore[arg-type]


def test_m005_adds_prompt_reference_and_keeps_data(tmp_path: Path) -> None:
    import duckdb

    from storage.migrations import MIGRATIONS, migrate

    path = tmp_path / "studio.duckdb"
    con = duckdb.connect(str(path))
    assert migrate(con, MIGRATIONS[:4]) == 4  # a store from before m005
    con.execute("INSERT INTO prompts (id, text) VALUES (nextval('prompts_id_seq'), 'old prompt')").fetchall()
    con.close()
    with Store(path) as s:
        assert s.schema_version == len(MIGRATIONS) >= 5
        assert MIGRATIONS[4].__name__ == "m005_prompt_reference"
        old = s.list_prompts()[0]
        assert (old["text"], old["reference"]) == ("old prompt", None)
        assert s.get_prompt(old["id"])["reference"] is None


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([{"prompt": "q", "rejected": "b"}], "row 1: 'chosen' is missing"),
        (["", {"prompt": "q", "chosen": "a", "rejected": "b"}, "[1, 2]"], "row 3: expected an object"),
        ([{"prompt": "q", "chosen": "a", "rejected": 3}], "row 1: 'rejected' must be a string"),
        ([{"prompt": 5, "chosen": "a", "rejected": "b"}], "row 1: 'prompt' must be a string or a list of messages"),
        ([{"prompt": [{"role": "user", "content": "q"}], "chosen": "a", "rejected": "b"}],
         "row 1: 'chosen' must be a non-empty list of messages"),
        ([{"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "user", "content": "a"}],
           "rejected": [{"role": "assistant", "content": "b"}]}], "row 1: 'chosen' must be exactly one assistant"),
        ([{"prompt": [{"role": "wizard", "content": "q"}], "chosen": [], "rejected": []}],
         "row 1: 'prompt' message 1 needs a 'role'"),
        ([{"prompt": " ", "chosen": "a", "rejected": "b"}], "row 1: 'prompt' is empty"),
        (['{"prompt": "q", "chosen": '], "row 1: not valid JSON"),
    ],
)  # fmt: skip
def test_import_errors_are_row_numbered(store: Store, tmp_path: Path, lines: list, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    with pytest.raises(StoreError, match=message.replace("[", r"\[").replace("(", r"\(")):
        store.import_preferences(path)
    assert store.stats()["prompts"] == 0  # nothing half-imported


def test_import_reports_many_errors_in_one_line(store: Store, tmp_path: Path) -> None:
    rows = [{"prompt": "q", "chosen": "a", "rejected": "b"}] + [{"prompt": "q"}] * 12
    with pytest.raises(StoreError) as err:
        store.import_preferences(write_jsonl(tmp_path / "many.jsonl", rows))
    text = str(err.value)
    assert text.startswith("many.jsonl: 12 invalid row(s): row 2: 'chosen' is missing; row 3:")
    assert text.endswith("; and 2 more") and "\n" not in text


def test_import_invalid_utf8_and_other_bad_files(store: Store, tmp_path: Path) -> None:
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(
        b'{"prompt": "q", "chosen": "a", "rejected": "b"}\n{"prompt": "caf\xe9", "chosen": "a"}\n'
    )
    with pytest.raises(
        StoreError, match="latin1.jsonl: invalid UTF-8 at row 2, byte 16; save the file as UTF-8"
    ):
        store.import_preferences(bad)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(StoreError, match="no rows to import"):
        store.import_preferences(empty)
    with pytest.raises(StoreError, match="no such file"):
        store.import_preferences(tmp_path / "missing.jsonl")
    not_parquet = tmp_path / "x.parquet"
    not_parquet.write_text("nope")
    with pytest.raises(StoreError, match="cannot read as Parquet"):
        store.import_preferences(not_parquet)
    with pytest.raises(StoreError, match="not a Hugging Face dataset dir"):
        store.import_preferences(tmp_path)


# -- CLI --------------------------------------------------------------------------------------------------------


def test_cli_import_export_stats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    src = write_jsonl(tmp_path / "seed.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"},
                                                {"prompt": "r", "chosen": "c", "rejected": "d"}])  # fmt: skip
    assert main(["import", str(src), *data]) == 0
    assert "imported 2 pairs into prompt set 'import:seed'" in capsys.readouterr().out
    out_file = tmp_path / "out" / "dpo.parquet"
    assert main(["export", "--format", "dpo", "--to", "parquet", str(out_file), *data]) == 0
    assert "wrote 2 dpo rows" in capsys.readouterr().out
    assert load_parquet(out_file).to_list()[0] == {"prompt": "q", "chosen": "a", "rejected": "b"}
    args = ["export", "--format", "kto", "--conversational", "--to", "jsonl", str(tmp_path / "k.jsonl")]
    assert main([*args, "--annotator", "nobody", *data]) == 0
    assert "wrote 0 kto rows" in capsys.readouterr().out
    assert main(["stats", "--json", *data]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["votes"], stats["dpo_rows"], stats["kto_rows"]) == (2, 2, 4)
    assert main(["stats", *data]) == 0
    assert "dpo rows: 2" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q"}\n')
    assert main(["import", str(bad), *data]) == 2
    err = capsys.readouterr().err
    assert err == "error: bad.jsonl: 1 invalid row(s): row 1: 'chosen' is missing\n"
    with Store(tmp_path / "data" / "studio.duckdb"):
        pass
    assert main(["import", str(tmp_path / "nope.jsonl"), *data]) == 2
    assert "no such file" in capsys.readouterr().err


def test_imported_prompts_are_numbered_in_file_order(store: Store, tmp_path: Path) -> None:
    rows = [{"prompt": f"prompt {i}", "chosen": "a", "rejected": "b"} for i in range(300)]
    store.import_preferences(write_jsonl(tmp_path / "ordered.jsonl", [*rows, rows[3]]))
    prompts = sorted(store.list_prompts("import:ordered", limit=None), key=lambda r: r["id"])
    assert [p["text"] for p in prompts] == [r["prompt"] for r in rows]
