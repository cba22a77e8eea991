"""The Train tab: the form helpers, then the served app through gradio_client on the real default model -- data
preview, a start with no pairs (a clear error, nothing launched), a tiny DPO job followed to the end with its
curves and a log without progress bars, cancel and resume (saying what resume will do) on a second job, and
Compare with parent on the trained model; the rows are checked in the DuckDB file after the server stops. Then
the runner behind Resume: a job cancelled after its first checkpoint continues from it and keeps its first
start time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from components import train as tab
from storage import Store
from studio.training import Runner, TrainingJob, describe
from studio.training.rundir import RunDir
from tests.servers import free_port, stop, wait_http

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning")]

TINY = {"max_steps": 2, "max_length": 128, "lora_r": 4, "lora_alpha": 8, "per_device_train_batch_size": 2,
        "min_examples": 2, "save_steps": 1}  # fmt: skip
PAIRS = [("2+2?", "4", "5"), ("Capital of France?", "Paris.", "Rome."), ("Hot or cold?", "Hot.", "Up.")]
FORM = ("smollm2-135m", json.dumps(TINY), "tab-test", "human", "")


def seed(store: Store) -> None:
    for q, good, bad in PAIRS:
        pid = store.add_prompt(q, "tab-test")
        a = store.add_run(pid, "smollm2-135m", "cot", good)
        b = store.add_run(pid, "smollm2-135m", "cove", bad)
        store.add_vote(store.add_comparison([a, b]), "A", "alice")


# -- the form, without a server -----------------------------------------------------------------------------------
def test_settings_box_takes_json_or_key_value_lines() -> None:
    assert tab.parse_settings_box("") == {} and tab.parse_settings_box('{"beta": 0.2}') == {"beta": 0.2}
    assert tab.parse_settings_box("max_steps=3\nloss_type = ipo\n") == {"max_steps": 3, "loss_type": "ipo"}
    for bad in ("[1, 2]", "{nope", "max_steps"):
        with pytest.raises(Exception, match="JSON object|key=value"):
            tab.parse_settings_box(bad)
    assert tab.train_values("smollm2-135m", "beta=0.2") == {"beta": 0.2, "base_model": "smollm2-135m"}
    with pytest.raises(Exception, match="source is one of"):
        tab.data_filters("", "robots", "")


@pytest.mark.skipif(shutil.which("node") is None, reason="runs the form's browser-side merge in node")
def test_a_widget_puts_only_changed_values_into_the_settings_box() -> None:
    fields = {f.name: f for f in describe("dpo").fields}
    lr = tab.merge_js(fields["learning_rate"], {"dpo": 5e-05, "reward": 1e-4})
    steps = tab.merge_js(fields["max_steps"], {"dpo": 20})
    cases = [
        (steps, "{}", 3.0, "dpo", '{"max_steps":3}'),  # numbers arrive as floats; an int setting stays an int
        (steps, '{"max_steps":3,"beta":0.2}', 20, "dpo", '{"beta":0.2}'),  # back to the default: dropped
        (steps, '{"max_steps":3}', None, "dpo", "{}"),  # a cleared box means the default
        (lr, "{}", 5e-05, "reward", '{"learning_rate":0.00005}'),  # each method has its own default
        (lr, "beta=0.2", 0.001, "dpo", "beta=0.2\nlearning_rate=0.001"),  # key=value lines keep their form
        (lr, "{broken", 0.001, "dpo", "{broken"),  # left for Preview and Start to explain
    ]
    for js, text, value, method, want in cases:
        script = (
            f"process.stdout.write(({js})({json.dumps(text)}, {json.dumps(value)}, {json.dumps(method)}))"
        )
        out = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True).stdout
        assert out == want, (text, value, method)


def test_every_setting_shows_defaults_as_the_widgets_do() -> None:
    defaults = {f.name: f.default for f in describe("dpo").fields}
    frame = tab.settings_frame(describe("dpo"))
    shown = dict(zip(frame["setting"], frame["default"], strict=True))
    assert shown["learning_rate"] == "0.00005"  # was rounded to 0 while the widget showed 0.00005
    assert float(shown["learning_rate"]) == defaults["learning_rate"] == 5e-05
    assert shown["max_steps"] == defaults["max_steps"] and shown["use_lora"] == defaults["use_lora"]


def test_the_log_leaves_out_progress_bars(tmp_path: Path) -> None:
    from tqdm import tqdm

    run = RunDir(tmp_path / "7")
    run.path.mkdir()
    with open(run.log, "w", encoding="utf-8") as log:
        log.write("[studio] dpo: 3 pairs\n")
        for _ in tqdm(range(3), file=log, mininterval=0, desc="Map"):  # tqdm redraws with carriage returns
            pass
        for _ in tqdm(iter(range(2)), file=log, mininterval=0):  # no total: '2it [00:00, 9.1it/s]'
            pass
        log.write("{'loss': 0.6931, 'epoch': 1.0}\n[studio] done\n")
    assert "%|" in run.tail(bars=True) and "it/s" in run.tail(bars=True)  # the bars are really in the file
    kept = ["[studio] dpo: 3 pairs", "{'loss': 0.6931, 'epoch': 1.0}", "[studio] done"]
    assert run.tail().splitlines() == kept
    assert run.tail(2).splitlines() == ["{'loss': 0.6931, 'epoch': 1.0}", "[studio] done"]


def test_a_reopened_page_follows_the_running_job() -> None:
    def job(i: int, state: str) -> TrainingJob:
        return TrainingJob(id=i, method="dpo", state=state, run_dir=f"/runs/{i}")

    assert tab.pick_job([job(3, "succeeded"), job(2, "running"), job(1, "failed")]).id == 2
    assert tab.pick_job([job(4, "queued"), job(3, "queued"), job(1, "failed")]).id == 3  # next in line
    assert tab.pick_job([job(3, "cancelled"), job(1, "succeeded")]).id == 3
    assert tab.pick_job([]) is None
    names = list(describe("dpo").curves)
    assert tab.panels(names)[1] == ("rewards/chosen vs rejected", ["rewards/chosen", "rewards/rejected"])


# -- the served app -----------------------------------------------------------------------------------------------
def status_until(client, job_id: int, states: tuple[str, ...], timeout: float) -> tuple:
    deadline = time.monotonic() + timeout
    while True:
        out = client.predict(job_id, api_name="/train_status")
        if any(f"**{s}**" in out[0] for s in states):
            return out
        assert time.monotonic() < deadline, f"job {job_id} never reached {states}: {out[0]}\n{out[3]}"
        time.sleep(2)


def column(frame: dict, name: str) -> list:
    i = frame["headers"].index(name)
    return [row[i] for row in frame["data"]]


def test_train_tab_through_gradio_client(settings, tmp_path: Path) -> None:
    from gradio_client import Client

    with Store(settings.db_path, data_dir=settings.data_dir) as store:
        seed(store)
    port = free_port()
    env = {**os.environ, "STUDIO_HOME": str(settings.data_dir),
           "STUDIO_THREADS": os.environ.get("STUDIO_THREADS", "")}  # fmt: skip
    with open(tmp_path / "serve.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "studio", "serve", "--port", str(port), "--no-preload"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/", timeout=120, proc=proc)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)

        summary, rows = client.predict("dpo", *FORM, api_name="/train_preview")
        assert "**3 pairs**" in summary and "Ready to start" in summary and len(rows["data"]) == 3
        summary, _ = client.predict(
            "dpo", "smollm2-135m", "{}", "no-such-set", "human", "", api_name="/train_preview"
        )
        assert "no preference pairs match the filters" in summary
        with pytest.raises(Exception, match="no preference pairs match the filters"):
            client.predict("dpo", "smollm2-135m", "{}", "no-such-set", "human", "", api_name="/train_start")
        assert client.predict(api_name="/train_jobs")["data"] == []  # nothing was launched

        _, job_id, jobs = client.predict("dpo", *FORM, api_name="/train_start")
        job_id = int(job_id)
        assert column(jobs, "id") == [job_id]
        # a second job, queued or already running: cancel and resume hold either way, and with 500 steps between
        # checkpoints it cannot have saved one, so Resume must say it restarts
        never = {**TINY, "max_steps": 1000, "save_steps": 500, "output_name": "never-trained"}
        _, second, _ = client.predict("dpo", FORM[0], json.dumps(never), *FORM[2:], api_name="/train_start")
        second = int(second)
        assert "cancelled" in client.predict(second, api_name="/train_cancel")[0]
        message = client.predict(second, api_name="/train_resume")[0]
        assert "queued again: no checkpoint yet: restarts from step 0; checkpoints every 500 steps" in message
        assert "continues from" not in message
        assert "cancelled" in client.predict(second, api_name="/train_cancel")[0]

        summary, plot, latest, logs = status_until(client, job_id, ("succeeded", "failed"), timeout=300)
        assert "**succeeded**" in summary, f"{summary}\n{logs}"
        assert {"loss", "rewards/margins", "rewards/chosen"} <= set(column(latest, "curve"))
        assert plot and logs.strip()
        bars = [line for line in logs.splitlines() if "it/s" in line or "s/it" in line or "%|" in line]
        assert not bars, bars  # TRL's tqdm bars are in train.log, not in the log box
        jobs = client.predict(api_name="/train_jobs")
        states = dict(zip(column(jobs, "id"), column(jobs, "state"), strict=True))
        assert states == {job_id: "succeeded", second: "cancelled"}
        with pytest.raises(Exception, match="only queued or running"):
            client.predict(job_id, api_name="/train_cancel")
        with pytest.raises(Exception, match="only failed or cancelled"):
            client.predict(job_id, api_name="/train_resume")

        model = f"dpo-{job_id}"
        assert f"`{model}`" in summary  # registered: the Arena's picker and this tab's compare offer it
        md, win, items = client.predict(
            model, "tab-test", "logprob", "smollm2-135m", "system1", 3, 16, api_name="/compare_with_parent"
        )
        assert "win rate" in md and "unlabelled" in md
        [rate] = column(win, "win rate")
        assert 0 <= float(rate) <= 1 and column(win, "parent") == ["smollm2-135m"]
        comparison_ids = [int(c) for c in column(items, "comparison")]
        assert len(comparison_ids) == 3
        # one click judges the votes outside the DPO job's training data with its implicit reward: all three
        # voted pairs were trained on, so none is left to score, and it says so rather than score them
        heldout = client.predict(job_id, api_name="/train_judge_heldout")
        assert (
            "No held-out vote pairs" in heldout and "3 voted pairs in its training data left out" in heldout
        )
    finally:
        stop(proc)

    with Store(settings.db_path) as store:
        run = store.get_training_run(job_id)
        assert run["status"] == "done" and store.get_training_run(second)["status"] == "cancelled"
        assert {"loss", "rewards/margins"} <= set(store.metrics(job_id))
        assert store.get_model(model)["parent"] == "smollm2-135m"
        for cid in comparison_ids:
            cmp = store.get_comparison(cid)
            assert {store.get_run(r)["model"] for r in cmp["run_ids"]} == {model, "smollm2-135m"}
            [verdict] = store.list_verdicts(comparison_id=cid)
            assert verdict["judge"] == "logprob" and verdict["ok"]
            assert store.list_votes(comparison_id=cid) == []  # queued for people


# -- the runner behind Resume ------------------------------------------------------------------------------------
def test_resume_continues_from_the_checkpoint_and_keeps_the_start_time(settings) -> None:
    with Store(settings.db_path, data_dir=settings.data_dir) as store:
        seed(store)
        runner = Runner(settings, store)
        job = runner.start("dpo", {**TINY, "max_steps": 1000, "save_steps": 1}, filters=tab.data_filters(
            "tab-test", "human", ""))  # fmt: skip
        run = runner.rundir(job.id)
        try:
            deadline = time.monotonic() + 600
            while run.newest_checkpoint() is None:  # the first step's checkpoint
                assert time.monotonic() < deadline and runner.sync(job.id).state == "running", run.tail(20)
                time.sleep(1)
            first = runner.get(job.id).started_at
            assert first and runner.cancel(job.id).state == "cancelled"
            time.sleep(1.1)  # start times are stamped to the second: a restart would show a later one
            # a checkpoint counts once its trainer state is written: the cancel may land while the next one is
            # half saved (its dir exists without trainer_state.json), and that one cannot be resumed from
            saved = run.checkpoints.glob("checkpoint-*/trainer_state.json")
            step = max(int(p.parent.name.split("-")[1]) for p in saved)
            assert runner.resume_plan(job.id).startswith(f"continues from its checkpoint at step {step}")
            resumed = runner.resume(job.id)
            assert resumed.state == "running" and resumed.resumed  # the device is free: it starts at once
            assert resumed.resume_note.startswith("continues from its checkpoint at step")
            assert resumed.started_at == first  # the original start time, not the restart's
            assert run.status()["attempt_started_at"] > first and run.status()["attempt"] == 2
        finally:
            if runner.get(job.id).state in ("queued", "running"):
                runner.cancel(job.id)
        assert store.get_training_run(job.id)["started_at"].isoformat() == first
