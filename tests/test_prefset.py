"""The shipped preference set (studio/eval/datasets/prefs): its files, the loader's shuffled pairs, and its
import into the store (by the API and ``studio import --prefset``)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from storage import Store
from studio.cli import main
from studio.errors import InputError
from studio.judging import prefset

KEYS = {"id", "category", "prompt", "chosen", "rejected", "reference"}


@pytest.fixture(scope="module")
def rows() -> dict[str, list[dict]]:
    return {split: prefset.load(split) for split in prefset.SPLITS}


def test_counts_categories_and_split(rows: dict[str, list[dict]]) -> None:
    everything = rows["train"] + rows["test"]
    assert len(everything) >= 240 and len(rows["test"]) >= 90
    per = Counter(r["category"] for r in everything)
    assert set(per) == set(prefset.CATEGORIES) and min(per.values()) >= 75
    for category in prefset.CATEGORIES:  # stratified: about 40% of each category is test
        test = sum(r["category"] == category for r in rows["test"])
        assert 0.35 <= test / per[category] <= 0.45, category
    prompts = {split: {r["prompt"] for r in rows[split]} for split in prefset.SPLITS}
    assert not prompts["train"] & prompts["test"]
    ids = [r["id"] for r in everything]
    assert len(set(ids)) == len(ids)


def test_every_row_is_well_formed(rows: dict[str, list[dict]]) -> None:
    for row in rows["train"] + rows["test"]:
        assert set(row) == KEYS, row["id"]
        assert re.fullmatch(r"prefs-\d{4}", row["id"])
        assert all(isinstance(row[k], str) for k in KEYS)
        assert row["prompt"].strip() and row["chosen"].strip() and row["rejected"].strip()
        assert row["chosen"] != row["rejected"]
        assert bool(row["reference"]) == (row["category"] == "correct"), row["id"]


def test_math_references_match_the_chosen_answer(rows: dict[str, list[dict]]) -> None:
    math = [
        r for r in rows["train"] + rows["test"] if r["reference"].isdigit() and re.search(r"\d", r["prompt"])
    ]
    assert len(math) >= 45  # arithmetic and word problems
    for r in math:
        numbers = lambda text: re.findall(r"\d+", text)  # noqa: E731
        assert r["reference"] in numbers(r["chosen"]), r["id"]
        assert r["reference"] not in numbers(r["rejected"]), r["id"]
        assert len(r["chosen"]) == len(r["rejected"]), r["id"]  # the same words, one number differs


def test_no_fixed_token_gives_the_answer_away(rows: dict[str, list[dict]]) -> None:
    everything = rows["train"] + rows["test"]
    for category in prefset.CATEGORIES:
        group = [r for r in everything if r["category"] == category]
        for side in ("chosen", "rejected"):
            first = Counter(r[side].split()[0] for r in group).most_common(1)[0][1]
            assert first / len(group) < 0.3, (category, side)


def test_items_shuffle_positions_reproducibly(rows: dict[str, list[dict]]) -> None:
    items = prefset.items("test")
    assert len(items) == len(rows["test"])
    second = sum(item.key[1] for item in items)
    assert abs(second - len(items) / 2) <= 1
    for item, row in zip(items, rows["test"], strict=True):
        rid, pos = item.key
        assert rid == row["id"] and item.question == row["prompt"] and item.reference == row["reference"]
        assert item.answers[pos].text == row["chosen"] and item.answers[1 - pos].text == row["rejected"]
    assert [i.key for i in prefset.items("test")] == [i.key for i in items]
    assert [i.key for i in prefset.items("test", seed=1)] != [i.key for i in items]


def test_bad_split_is_an_input_error(tmp_path: Path) -> None:
    for call in (lambda: prefset.load("dev"), lambda: prefset.items("Test")):
        with pytest.raises(InputError, match="one of train, test"):
            call()
    with Store(tmp_path / "studio.duckdb") as s, pytest.raises(InputError, match="not 'all'"):
        prefset.import_split(s, "all")


def test_import_split_makes_the_right_votes(tmp_path: Path) -> None:
    items = {item.question: item for item in prefset.items("test", seed=5)}
    with Store(tmp_path / "studio.duckdb") as s:
        result = prefset.import_split(s, "test", seed=5)
        assert (result.rows, result.prompt_set, result.annotator) == (
            len(items),
            "prefs-test",
            "prefset:written",
        )
        prompts = {p["id"]: p for p in s.list_prompts("prefs-test", limit=None)}
        votes = {v["comparison_id"]: v for v in s.list_votes(limit=None)}
        for c in s.list_comparisons(limit=None):
            item = items[prompts[c["prompt_id"]]["text"]]
            assert votes[c["id"]]["choice"] == "AB"[item.key[1]]
            assert votes[c["id"]]["annotator"] == "prefset:written"
            assert (prompts[c["prompt_id"]]["reference"] or "") == item.reference
        assert len(votes) == len(items)


def test_cli_import_prefset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    assert main(["import", "--prefset", "train", "--seed", "3", *data]) == 0
    out = capsys.readouterr().out
    assert "145 pairs into prompt set 'prefs-train' (annotator 'prefset:written')" in out
    assert "of them (seed 3)" in out
    for bad, message in (
        (["--prefset", "dev"], "error: the preference set's split is one of train, test, not 'dev'\n"),
        (["--prefset", "test", "--seed", "x"], "error: --seed takes a whole number, not 'x'\n"),
        ([], "error: name a file or dir to import, or give --prefset train|test\n"),
    ):
        assert main(["import", *bad, *data]) == 2
        assert capsys.readouterr().err == message


def test_generator_rewrites_the_same_files(tmp_path: Path) -> None:
    """The committed files are what ``make_prefs.py`` writes (it is seeded): run it on a copy and compare."""
    src = prefset.DIR / "make_prefs.py"
    copy = tmp_path / "make_prefs.py"
    copy.write_text(src.read_text(encoding="utf-8"), encoding="utf-8")
    subprocess.run([sys.executable, str(copy)], check=True, capture_output=True, timeout=60)
    for split in prefset.SPLITS:
        assert (tmp_path / f"{split}.jsonl").read_bytes() == (prefset.DIR / f"{split}.jsonl").read_bytes()
