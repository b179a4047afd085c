"""Issue 26's probe of run folders, as a researcher's shell treats them: two writers in one folder, data that changed
under a run, a run continued on another catalog, a copied run, folders inside folders, damaged weights, and what a
stopped `data prepare` leaves behind.

The promise: a clear refusal (exit code 2, one error naming the folder and what is wrong, a hint with what to do) or a
correct result, never a silent one or a traceback. The file names of a run folder are spelled in `hanorec/runs.py` only.
"""
import os, re, shutil, subprocess, sys
from pathlib import Path

import pytest

from conftest import PROBE_ENV as ENV, ROOT, refused, run_hanorec, tiny_sft, tiny_world

WORLD = ("--users", 12, "--items", 8, "--min-user", 3, "--candidates", 4)


def prepare(out:Path, *more) -> Path:
    r = run_hanorec("data", "prepare", "synthetic", *WORLD, *more, "--out", out, env=ENV)
    assert r.returncode == 0, r.stderr
    return out


def holder(folder:Path, command:str, beside:bool=False) -> subprocess.Popen:
    "Another process holding `folder`'s writer lock until it is killed, as a live `hanorec train` does."
    code = (f"from hanorec.core import FolderLock\nimport time\nwith FolderLock({str(folder)!r}, {command!r}, beside={beside}):\n"
            "    print('in', flush=True); time.sleep(600)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env={**os.environ, **ENV})
    assert p.stdout.readline().strip() == "in"
    return p


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    "A synthetic world of 8 items (4 candidates per user) and a 3-step encoder SFT run on it, never changed by a test."
    d = tmp_path_factory.mktemp("probe_runs")
    tiny_sft(tiny_world(d/"data"), d/"runs"/"sft")
    return d


# two writers ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,command", [
    (lambda d: ["train", f"data={d/'data'}", f"out={d/'runs'/'sft'}", "model=seqrec"], "hanorec train"),
    (lambda d: ["train", "--resume", f"out={d/'runs'/'sft'}"], "hanorec train"),  # the trainer names itself
    (lambda d: ["evaluate", d/"runs"/"sft"], "hanorec evaluate"),
], ids=["train", "resume", "evaluate"])
def test_a_second_writer_of_a_run_is_refused_naming_the_first(tiny, capsys, argv, command):
    first = holder(tiny/"runs"/"sft", "hanorec train")
    try:
        before = sorted(p.name for p in (tiny/"runs"/"sft").iterdir())
        err = refused(capsys, argv(tiny), f"{tiny/'runs'/'sft'} is being written by hanorec train (pid {first.pid}, started ",
                      f"so {command} does not start", "wait until it ends")
        assert re.search(r"started \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", err), err
        assert sorted(p.name for p in (tiny/"runs"/"sft").iterdir()) == before  # nothing written, nothing deleted
    finally: first.kill(); first.wait()


def test_a_killed_writer_leaves_no_lock_behind(tiny):
    from hanorec.runs import RunFolder
    first = holder(tiny/"runs"/"sft", "hanorec train")
    first.kill(); first.wait()  # SIGKILL: no clean-up ran
    with RunFolder(tiny/"runs"/"sft").writer("hanorec train --resume"): pass


def test_two_prepares_of_one_folder_and_two_grids_in_one_folder_are_refused(tiny, tmp_path, capsys):
    first = holder(tmp_path/"world", "hanorec data prepare", beside=True)
    try: refused(capsys, ["data", "prepare", "synthetic", *WORLD, "--out", tmp_path/"world"], "is being written by hanorec data prepare")
    finally: first.kill(); first.wait()
    assert not (tmp_path/"world").exists()
    grid = tmp_path/"grid.yaml"
    grid.write_text(f"datasets:\n  world: {{path: {tiny/'data'}}}\nmetrics: [hr@1, ndcg@3]\nstages:\n  - {{name: sft, settings: [model=seqrec, optim.max_steps=2]}}\n")
    first = holder(tmp_path/"grid", "hanorec experiment run")
    try: refused(capsys, ["experiment", "run", grid, "--out", tmp_path/"grid"], "is being written by hanorec experiment run")
    finally: first.kill(); first.wait()
    assert not (tmp_path/"grid"/"world").exists()  # the live grid's cells are left alone


# a run knows its data --------------------------------------------------------------------------------------------------

@pytest.fixture
def own(tiny, tmp_path):
    "A world and a run of this test's own, free to change."
    return tiny_sft(prepare(tmp_path/"data"), tmp_path/"runs"/"sft")


def test_data_prepared_again_with_another_seed_is_refused_by_evaluate_and_resume(own, tmp_path, capsys):
    prepare(tmp_path/"data", "--seed", 1)
    said = (f"{own} was trained on {tmp_path/'data'}", "differ from what the run recorded", "prepare")
    refused(capsys, ["evaluate", own], *said)
    refused(capsys, ["train", "--resume", f"out={own}"], *said)
    assert not (own/"eval").exists()
    prepare(tmp_path/"data", "--seed", 0)  # prepared again as it was: the same fingerprint
    assert run_hanorec("evaluate", own, env=ENV).returncode == 0


def test_a_config_edited_to_another_dataset_is_refused(own, tmp_path, capsys):
    other = prepare(tmp_path/"other", "--seed", 2)
    config = own/"config.yaml"
    config.write_text(config.read_text().replace(str(tmp_path/"data"), str(other)))
    refused(capsys, ["evaluate", own], f"{other} differ from what the run recorded", "point data: in")


def test_compare_refuses_runs_scored_on_other_candidate_sets(tiny, tmp_path, capsys):
    three = tiny_sft(prepare(tmp_path/"three", "--candidates", 3), tmp_path/"runs"/"three")
    refused(capsys, ["compare", tiny/"runs"/"sft", three], "were trained on different candidate sets", "the same prepared dataset")


def test_init_from_a_run_on_another_catalog_is_refused(tiny, tmp_path, capsys):
    nine = prepare(tmp_path/"nine", "--items", 9)
    refused(capsys, ["train", f"data={nine}", f"init={tiny/'runs'/'sft'}", "objective=dpo", f"out={tmp_path/'dpo'}", "optim.max_steps=2"],
            f"{tiny/'runs'/'sft'} was trained on a catalog of 8 items", "9 items", "without init=")
    assert not (tmp_path/"dpo").exists()


# a run knows its place -------------------------------------------------------------------------------------------------

def test_a_copied_run_resumes_in_the_copy(tiny, tmp_path):
    copy = tmp_path/"moved"/"sft"
    shutil.copytree(tiny/"runs"/"sft", copy)
    shutil.rmtree(copy/"model"); (copy/"metrics.json").unlink()  # stopped after its last checkpoint
    original = {p: p.stat().st_mtime_ns for p in (tiny/"runs"/"sft").rglob("*")}
    r = run_hanorec("train", "--resume", copy/"config.yaml", env=ENV, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (copy/"metrics.json").exists() and (copy/"model").is_dir()
    assert {p: p.stat().st_mtime_ns for p in (tiny/"runs"/"sft").rglob("*")} == original  # the original is untouched


def test_a_moved_language_model_run_is_whole_where_it_stands(tiny, tmp_path):
    "The tiny composed MLLM a run saves in its own base/ is found there after the whole experiment folder moved."
    exp = tmp_path/"exp"
    shutil.copytree(tiny/"data", exp/"data")
    r = run_hanorec("train", "data=data", "out=runs/lm", "model=composed-tiny", "optim.max_steps=1", "optim.batch_size=2",
                    "optim.grad_accum=1", "eval.users=2", "eval.every=0", "history=3", "prompt_candidates=2", env=ENV, cwd=exp)
    assert r.returncode == 0, r.stderr
    assert "exp" not in (exp/"runs"/"lm"/"base.json").read_text()  # recorded inside the run, not where it was made
    shutil.move(exp, tmp_path/"moved")
    (tmp_path/"elsewhere").mkdir()
    r = run_hanorec("evaluate", tmp_path/"moved"/"runs"/"lm", "--users", 2, env=ENV, cwd=tmp_path/"elsewhere")
    assert r.returncode == 0, r.stderr


def test_a_relative_data_is_read_from_the_run_folder(tiny, tmp_path):
    from hanorec.runs import RunFolder
    shutil.copytree(tiny/"data", tmp_path/"exp"/"data"); shutil.copytree(tiny/"runs"/"sft", tmp_path/"exp"/"runs"/"sft")
    run = RunFolder(tmp_path/"exp"/"runs"/"sft")
    run.config_file.write_text(run.config_file.read_text().replace(f"data: {tiny/'data'}", "data: ../../data"))
    (tmp_path/"elsewhere").mkdir()
    r = run_hanorec("evaluate", run.path, env=ENV, cwd=tmp_path/"elsewhere")
    assert r.returncode == 0, r.stderr


# no folder inside another ----------------------------------------------------------------------------------------------

def test_nested_folders_are_refused_before_anything_is_written(tiny, tmp_path, capsys):
    data = prepare(tmp_path/"data")
    refused(capsys, ["train", f"data={data}", f"out={data/'runs'/'x'}", "model=seqrec"], "is inside", "which is a prepared dataset")
    refused(capsys, ["train", f"data={data}", f"out={data}", "model=seqrec"], f"{data} is a prepared dataset")
    assert not (data/"runs").exists() and not (data/"config.yaml").exists()
    run = tmp_path/"run"
    shutil.copytree(tiny/"runs"/"sft", run)
    refused(capsys, ["data", "prepare", "synthetic", *WORLD, "--out", run], f"{run} is a run folder")
    shutil.copytree(tiny/"runs"/"sft", data/"old"/"sft")  # a run put inside a dataset before this was refused
    refused(capsys, ["data", "prepare", "synthetic", *WORLD, "--out", data], "holds a run", "that would delete the run")
    assert (data/"old"/"sft"/"metrics.json").exists()
    grid = tmp_path/"grid.yaml"
    grid.write_text(f"datasets:\n  world: {{path: {tiny/'data'}}}\nmetrics: [hr@1, ndcg@3]\nstages:\n  - {{name: sft, settings: [model=seqrec, optim.max_steps=2]}}\n")
    refused(capsys, ["experiment", "run", grid, "--out", tiny/"data"], f"{tiny/'data'} is a prepared dataset")
    assert not (tiny/"data"/"grid.yaml").exists()


def test_a_new_run_over_other_work_is_refused(tiny, tmp_path, capsys):
    "A run made over a folder that holds runs or a dataset would put them inside a run, locked out of every later writer."
    shutil.copytree(tiny/"runs"/"sft", tmp_path/"runs"/"sft"); shutil.copytree(tiny/"data", tmp_path/"data")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    refused(capsys, ["train", f"data={tmp_path/'data'}", f"out={tmp_path/'runs'}", "model=seqrec"], "already holds other work", "holds a finished run",
            f"out={tmp_path/'runs'/'new-run'}")
    refused(capsys, ["train", f"data={tmp_path/'data'}", f"out={tmp_path}", "model=seqrec"], "already holds other work")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written
    from hanorec.core import HanorecError
    from hanorec.settings import train_config
    from hanorec.train import train
    with pytest.raises(HanorecError, match="which is a prepared dataset"):  # the trainer checks its place itself, called from Python too
        train(train_config(overrides=[f"data={tmp_path/'data'}", f"out={tmp_path/'data'/'run'}", "model=seqrec", "optim.max_steps=1"]))
    assert not (tmp_path/"data"/"run").exists()


def test_a_runs_own_settings_as_a_template(tiny, tmp_path, capsys, monkeypatch):
    "hanorec train RUN/config.yaml: the run's folders are read from the run (not from here), and the new run needs its own out=."
    shutil.copytree(tiny/"data", tmp_path/"exp"/"data"); shutil.copytree(tiny/"runs"/"sft", tmp_path/"exp"/"runs"/"sft")
    run = tmp_path/"exp"/"runs"/"sft"
    run.joinpath("config.yaml").write_text(run.joinpath("config.yaml").read_text().replace(f"data: {tiny/'data'}", "data: ../../data"))
    (tmp_path/"elsewhere").mkdir()
    monkeypatch.chdir(tmp_path/"elsewhere")
    refused(capsys, ["train", run/"config.yaml"], "holds the settings of the run", "a new run needs a folder of its own", "out=NEW")
    assert not list((tmp_path/"elsewhere").iterdir())  # nothing trained into the current folder
    r = run_hanorec("train", run/"config.yaml", f"out={tmp_path/'exp'/'runs'/'again'}", env=ENV, cwd=tmp_path/"elsewhere")
    assert r.returncode == 0, r.stderr
    from hanorec.runs import RunFolder
    assert os.path.samefile(RunFolder(tmp_path/"exp"/"runs"/"again").settings()["data"], tmp_path/"exp"/"data")  # the template's data


def test_a_base_json_that_is_not_a_mapping_is_a_clear_error(tiny, tmp_path, capsys):
    run = tmp_path/"run"; shutil.copytree(tiny/"runs"/"sft", run)
    (run/"base.json").write_text("[1]")
    refused(capsys, ["evaluate", run], "base.json: expected a mapping", "damaged")


# damaged weights -------------------------------------------------------------------------------------------------------

def test_truncated_weights_are_a_refusal_naming_the_file(tiny, tmp_path, capsys):
    run = tmp_path/"run"
    shutil.copytree(tiny/"runs"/"sft", run)
    weights = run/"model"/"model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    refused(capsys, ["evaluate", run], f"{run/'model'} cannot be loaded", "train the run again")
    refused(capsys, ["train", f"data={tiny/'data'}", f"init={run}", "objective=dpo", f"out={tmp_path/'dpo'}", "optim.max_steps=2"],
            f"{run/'model'} cannot be loaded")


# a stopped prepare -----------------------------------------------------------------------------------------------------

def test_the_next_prepare_removes_what_a_stopped_one_left(tmp_path):
    (tmp_path/".world.k3j9x.tmp").mkdir(); (tmp_path/".world.k3j9x.tmp"/"items.parquet").write_text("half")
    r = run_hanorec("data", "prepare", "synthetic", *WORLD, "--out", tmp_path/"world", env=ENV)
    assert r.returncode == 0, r.stderr
    assert "removed .world.k3j9x.tmp, left by a stopped prepare" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["world"]


# one place for the names -----------------------------------------------------------------------------------------------

def test_run_file_names_are_spelled_in_the_runs_room_only():
    names = re.compile(r"""["'/](config\.yaml|base\.json|log\.jsonl|data\.json|checkpoints|pairs|plots|reference)["'/]""")
    rooms = ("evaluation", "policies", "grid", "cli", "demo", "claims", "experiments", "runner", "train", "families", "settings", "observers", "checkpoints")
    found = {r: [l.strip() for l in (ROOT/"hanorec"/f"{r}.py").read_text().splitlines()
                 if names.search(l) and not l.strip().startswith(("#", '"', "'")) and "help=" not in l and "HanorecError(" not in l and "elem_id" not in l]
             for r in rooms}
    assert not any(found.values()), found


def test_evaluate_of_a_run_still_training_says_wait_not_resume(tiny, tmp_path, capsys):
    run = tmp_path/"live"
    shutil.copytree(tiny/"runs"/"sft", run); (run/"metrics.json").unlink()  # not finished yet
    first = holder(run, "hanorec train")
    try: err = refused(capsys, ["evaluate", run], "is not a finished run (metrics.json is missing)", f"wait until hanorec train (pid {first.pid}) ends")
    finally: first.kill(); first.wait()
    assert "--resume" not in err  # resuming a live run would make a second writer
