"""The bad-grid corpus: every kind of broken grid file the probe of issue 25 found, built by code, with its exact answer.

The promise for each: `hanorec experiment run FILE` exits with code 2 and one error line that names the file, the line
(or the key) and what to do, before anything is made: no traceback, no grid folder, no cell trained. And
`hanorec experiment report` answers on any state of a grid's folder.
"""
import os, subprocess, sys
from pathlib import Path

import pytest

from conftest import ROOT

WORLD = "datasets:\n  world: {synthetic: {users: 40, items: 60}}\n"
STAGES = "stages:\n  - {name: sft, settings: [model=seqrec, optim.max_steps=2]}\n"
LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))  # 9**9 strings, were it expanded

# name -> (the file's bytes, what the error must say: the file and line or key first, then the rest)
CORPUS = {
    "duplicate-key": (WORLD + STAGES + "stages:\n  - {name: dpo}\n",
                      [":5: the key 'stages' is given twice (lines 3 and 5)", "hint: merge the two stages: entries into one"]),
    "duplicate-dataset": ("datasets:\n  a: {synthetic: {}}\n  a: {prepare: movielens-small}\n" + STAGES,
                          [":3: the key 'a' is given twice (lines 2 and 3)"]),
    "billion-laughs": (WORLD + STAGES + LAUGHS, [":10: this value expands through its aliases to more than 100,000 values",
                                                 "hint: write the values out"]),
    "recursive-alias": (WORLD + STAGES + "settings: &s [device=cpu, *s]\n",
                        [":5: the alias *s refers to the value that holds it (a recursive alias)", "hint: give *s outside"]),
    "python-tag": (WORLD + STAGES + "name: !!python/object/apply:os.system [echo hi]\n",
                   [":5: the tag !!python/object/apply:os.system is not allowed", "hint: remove !!python/object/apply:os.system"]),
    "not-utf8": ((WORLD + STAGES + "name: Amélie\n").encode("latin-1"), [":5: not UTF-8 text (byte 0xe9", "hint: save the file as UTF-8"]),
    "utf16-without-bom": ((WORLD + STAGES).encode("utf-16-le"), ["not UTF-8 text: it holds NUL bytes", "hint: save the file as UTF-8"]),
    "negative-seed": (WORLD + "seeds: [-1]\n" + STAGES, [":3: seeds[0] -1 is outside [0, 2**32-1]", "hint: seeds: [0, 1, 2]"]),
    "20-digit-seed": (WORLD + "seeds: [0, 12345678901234567890]\n" + STAGES, [":3: seeds[1] 12345678901234567890 is outside [0, 2**32-1]"]),
    "unknown-synthetic-option": ("datasets:\n  world:\n    synthetic:\n      users: 40\n      visual_signl: 0.5\n" + STAGES,
                                 [":5: datasets.world.synthetic.visual_signl: the synthetic world takes no option 'visual_signl'",
                                  "hint: its options: users, items, seed, visual_signal"]),
    "synthetic-option-out-of-range": ("datasets:\n  world:\n    synthetic:\n      drift: 3\n" + STAGES, [":4: datasets.world.synthetic.drift:", "drift"]),
    "unknown-prepare-option": ("datasets:\n  ml:\n    prepare: movielens-small\n    minuser: 3\n" + STAGES,
                               [":4: datasets.ml.minuser: prepare movielens-small takes no option 'minuser'", "hint: its options: path"]),
    "unknown-source": ("datasets:\n  ml: {prepare: movielens-tiny}\n" + STAGES, [":2: datasets.ml.prepare: unknown data source 'movielens-tiny'",
                                                                               "hint: known sources:"]),
    "users-many": (WORLD + "stages:\n  - {name: sft, users: many, settings: [model=seqrec]}\n",
                   [":4: stages[0].users must be a whole number of test users of at least 1", "hint: users: 20"]),
    "synthetic-users-many": ("datasets:\n  world: {synthetic: {users: many}}\n" + STAGES,
                             [":2: datasets.world.synthetic.users: synthetic users='many' is not an integer", "hint: for example users: 1000"]),
    "metrics-bogus": (WORLD + "metrics: [hr@5, bogus@5]\n" + STAGES, [":3: metrics[1] 'bogus@5' is not a metric of the sampled protocol",
                                                                     "hint: choose from hr@1"]),
    "metrics-string": (WORLD + "metrics: hr@5\n" + STAGES, [":3: metrics must be a list of metric names, got 'hr@5'", "hint: metrics: [hr@5]"]),
    "metric-cannot-miss": ("datasets:\n  world: {synthetic: {users: 40, items: 60, candidates: 5}}\nmetrics: [hr@5]\n" + STAGES,
                           [":3: metrics[0] hr@5 cannot miss on dataset world: each user has 5 candidates", "candidates: 6 or more"]),
    "bad-lr-in-third-stage": (WORLD + "stages:\n  - {name: popularity, settings: [model=popularity]}\n  - {name: sft, settings: [model=seqrec]}\n"
                              "  - name: dpo\n    start: sft\n    settings:\n      - init=sft\n      - objective=dpo\n      - optim.lr=-1\n",
                              [":11: stages[2].settings[2] of stage dpo: optim.lr=-1", "hint: set optim.lr"]),
    "history-0-in-third-stage": (WORLD + "stages:\n  - {name: a, settings: [model=seqrec]}\n  - {name: b, settings: [model=seqrec]}\n"
                                 "  - {name: c, settings: [model=seqrec, history=0]}\n", [":6: stages[2].settings[1] of stage c: history=0", "hint:"]),
    "unknown-setting": (WORLD + "stages:\n  - {name: sft, settings: [model=seqrec, optim.lrr=1e-3]}\n",
                        [":4: stages[0].settings[1] of stage sft: unknown config key 'optim.lrr'", "hint: valid keys: optim.lr"]),
    "preference-without-start": (WORLD + "stages:\n  - {name: dpo, settings: [model=seqrec, objective=dpo]}\n",
                                 [":4: stages[0].settings[1] of stage dpo: objective dpo needs a reference model", "hint: set init="]),
    "continuing-another-model": (WORLD + "stages:\n  - {name: sft, settings: [model=seqrec]}\n"
                                 "  - {name: dpo, start: sft, settings: [init=sft, model=popularity, objective=dpo]}\n",
                                 [":5: stages[1].settings[1] sets model=popularity, but stage dpo continues sft, which trains seqrec",
                                  "hint: a stage continues its init stage's model"]),
    # what the grid itself sets: each cell's folder, dataset and seed, and one device for every stage
    "stage-sets-out": (WORLD + "stages:\n  - {name: sft, settings: [model=seqrec, out=runs/mine]}\n",
                       [":4: stages[0].settings[1] of stage sft: out=runs/mine: out= is set by the grid", "hint: remove it; choose OUT with hanorec experiment run --out"]),
    "grid-sets-data": (WORLD + "settings: [data=data/syn]\n" + STAGES,
                       [":3: settings[0]: data=data/syn: data= is set by the grid", "hint: remove it; give the folder as a dataset"]),
    "stage-sets-device": (WORLD + "stages:\n  - {name: sft, settings: [model=seqrec, device=cpu]}\n",
                          [":4: stages[0].settings[1] of stage sft: device=cpu: device= is set for the whole grid", "hint: remove it; give --device"]),
    "stage-sets-seed": (WORLD + "seeds: [0, 1]\nstages:\n  - {name: sft, settings: [model=seqrec, seed=5]}\n",
                        [":5: stages[0].settings[1] of stage sft: seed=5: seed= is set by the grid's seeds", "hint: remove it and set the seed there: seeds: [5]"]),
    "key-twice-in-a-stage": (WORLD + "stages:\n  - name: sft\n    settings:\n      - model=seqrec\n      - optim.max_steps=2\n      - optim.max_steps=5\n",
                             [":8: stages[0].settings[2] of stage sft: optim.max_steps is set twice in this list: "
                              "optim.max_steps=2 (settings[1], line 7) and optim.max_steps=5 (settings[2], line 8)", "hint: keep one of them"]),
    "key-twice-in-grid-settings": (WORLD + "settings:\n  - optim.max_steps=2\n  - optim.max_steps=5\n" + STAGES,
                                   [":5: settings[1]: optim.max_steps is set twice in this list: optim.max_steps=2 (settings[0], line 4) and "
                                    "optim.max_steps=5 (settings[1], line 5)", "hint: keep one of them; a stage's own settings override these"]),
    "start-without-init": (WORLD + "stages:\n  - {name: sft, settings: [model=seqrec]}\n  - {name: dpo, start: sft, settings: [objective=dpo]}\n",
                           [":5: stages[1].start sft: stage dpo has no init=sft in its settings, so it would train from scratch",
                            "hint: add init=sft to this stage's settings"]),
    "init-other-than-start": (WORLD + "stages:\n  - {name: sft, settings: [model=seqrec]}\n  - {name: sft2, settings: [model=seqrec]}\n"
                              "  - {name: dpo, start: sft, settings: [init=sft2, objective=dpo]}\n",
                              [":6: stages[2].settings[0] of stage dpo: init=sft2, but its start is sft", "hint: set init=sft or start: sft2"]),
    "against-on-other-users": (WORLD + "stages:\n  - {name: pop, users: 5, settings: [model=popularity]}\n"
                               "  - {name: sft, against: pop, settings: [model=seqrec]}\n",
                               [":5: stages[1].against of stage sft: it is scored on every test user, but pop, which it is compared with, on users: 5: "
                                "paired values need the same users", "hint: give both stages the same users (users: 5 in each)"]),
    "start-on-other-users": (WORLD + "stages:\n  - {name: sft, settings: [model=seqrec]}\n"
                             "  - {name: dpo, start: sft, users: 5, settings: [init=sft, objective=dpo]}\n",
                             [":5: stages[1].users of stage dpo: it is scored on users: 5, but sft, which it is compared with, on every test user"]),
    "datasets-as-a-list": ("datasets: [data/syn]\n" + STAGES,
                           [":1: datasets must be a mapping of name: {path: FOLDER} (or prepare: SOURCE, or synthetic: {...}), got list",
                            "hint: datasets: {syn: {path: data/syn}}"]),
    "synthetic-options-beside-prepare": ("datasets:\n  world: {prepare: synthetic, users: 40}\n" + STAGES,
                                         [":2: datasets.world.users: prepare synthetic takes no option 'users': the synthetic world's options go under synthetic:",
                                          "hint: put the world's options under synthetic: world: {synthetic: {users: 40}}"]),
    # a language model's item tokens name an encoder stage defined before it (issue 27), and a stage's own seeds
    "item-tokens-from-a-later-stage": (WORLD + "stages:\n  - {name: lm, settings: [model=composed-tiny, task=head, items=token, item_tokens=sas]}\n"
                                       "  - {name: sas, settings: [model=seqrec, seqrec.text=false]}\n",
                                       [":4: stages[0].settings[3] of stage lm: item_tokens=sas takes its item tokens from 'sas', which is not a stage defined before it",
                                        "hint: define the encoder stage first"]),
    "item-tokens-from-a-language-model": (WORLD + "stages:\n  - {name: a, settings: [model=composed-tiny]}\n"
                                          "  - {name: b, settings: [model=composed-tiny, task=head, items=token, item_tokens=a]}\n",
                                          [":5: stages[1].settings[3] of stage b: item_tokens=a names stage a, which trains composed-tiny, not an encoder",
                                           "hint: name a stage with model=seqrec"]),
    "stage-seed-outside-the-grid": (WORLD + "seeds: [0, 1]\nstages:\n  - {name: sft, seeds: [0, 2], settings: [model=seqrec]}\n",
                                    [":5: stages[0].seeds[1] of stage sft: 2 is not one of the grid's seeds [0, 1]", "hint: list seeds the grid runs"]),
    "start-on-fewer-seeds": (WORLD + "seeds: [0, 1]\nstages:\n  - {name: sft, seeds: [0], settings: [model=seqrec]}\n"
                             "  - {name: dpo, start: sft, settings: [init=sft, objective=dpo]}\n",
                             [":6: stages[1].start of stage dpo: it runs on seeds 0, 1, but sft, which it names, does not run on 1",
                              "hint: give stage dpo seeds: [0] (or fewer), or run sft on every seed"]),
    "missing-path-dataset": ("datasets:\n  mine: {path: /nowhere/prepared}\n" + STAGES,
                             ["dataset mine: /nowhere/prepared is not a prepared folder (no manifest.json)", "hint: make it with hanorec data prepare"]),
}


def run_hanorec(*args, cwd:Path, timeout:int=120):
    "The installed `hanorec` command, as a user runs it; a hang fails the test instead of stalling the suite."
    env = {**os.environ, "HANOREC_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(Path(sys.executable).parent/"hanorec"), *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def _refused(r, tmp_path, name, says):
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "Traceback" not in out, out
    error = r.stderr.strip().splitlines()
    assert error[0].startswith("hanorec: error: ") and error[-1].strip().startswith("hint: "), out
    for s in says: assert s in r.stderr, (s, r.stderr)
    assert not (tmp_path/name).exists(), "the grid's folder was made"  # nothing prepared, nothing trained
    assert not list(tmp_path.glob("**/metrics.json"))


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_bad_grid_file_is_refused_before_anything_runs(name, tmp_path):
    text, says = CORPUS[name]
    f = tmp_path/f"{name}.yaml"
    f.write_bytes(text if isinstance(text, bytes) else text.encode())
    r = run_hanorec("experiment", "run", f, cwd=tmp_path)
    _refused(r, tmp_path, name, [f"{f}{s}" if s.startswith(":") else s for s in says])  # ":5: ..." follows the file's name


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-32"])
def test_a_grid_file_with_a_byte_order_mark_is_read(encoding, tmp_path):
    # Read correctly: the error it meets is the one on line 3 of its text (a bad seed), so every byte before it was decoded.
    f = tmp_path/"grid.yaml"
    f.write_bytes((WORLD + "seeds: [-1]\nname: Amélie's grid\n" + STAGES).encode(encoding))
    r = run_hanorec("experiment", "run", f, cwd=tmp_path)
    _refused(r, tmp_path, "grid", [f"{f}:3: seeds[0] -1 is outside [0, 2**32-1]"])


def test_missing_file_folder_and_unreadable_file(tmp_path):
    r = run_hanorec("experiment", "run", tmp_path/"nowhere.yaml", cwd=tmp_path)
    _refused(r, tmp_path, "nowhere", [f"{tmp_path/'nowhere.yaml'} does not exist", "hint: check the path"])
    (tmp_path/"grids").mkdir()
    r = run_hanorec("experiment", "run", tmp_path/"grids", cwd=tmp_path)
    _refused(r, tmp_path, "nowhere", [f"{tmp_path/'grids'} is a folder, not a YAML file", "hint: name the .yaml file itself"])
    assert not list((tmp_path/"grids").iterdir())
    if os.geteuid() != 0:  # root reads any file
        f = tmp_path/"locked.yaml"
        f.write_text(WORLD + STAGES); f.chmod(0)
        r = run_hanorec("experiment", "run", f, cwd=tmp_path)
        _refused(r, tmp_path, "locked", [f"{f} cannot be read", "hint: check its permissions"])


def test_a_setting_the_prepared_catalog_cannot_fill_is_refused_before_any_cell(tmp_path):
    # Only the prepared data says how many items a user leaves: run_grid checks every stage against it before the first cell.
    f = tmp_path/"grid.yaml"
    f.write_text(WORLD + "stages:\n  - {name: sft, settings: [model=seqrec]}\n"
                 "  - {name: sdpo, start: sft, settings: [init=sft, objective=sdpo, negatives.k=100]}\n")
    r = run_hanorec("experiment", "run", f, cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 2 and "Traceback" not in out, out
    assert f"{f}:5: stages[1].settings[2] of stage sdpo on dataset world: negatives.k=100 does not fit" in r.stderr
    assert "hint: set negatives.k=" in r.stderr
    assert (tmp_path/"grid"/"data"/"world"/"manifest.json").exists() and not (tmp_path/"grid"/"world").exists()  # prepared, nothing trained


def test_an_unknown_device_is_refused_before_anything_is_made(tmp_path):
    f = tmp_path/"grid.yaml"
    f.write_text(WORLD + STAGES)
    r = run_hanorec("experiment", "run", f, "--device", "tpu", cwd=tmp_path)
    _refused(r, tmp_path, "grid", ["unknown device 'tpu'", "hint: use auto, cpu, cuda, cuda:N or mps"])
    f.write_text(WORLD + "settings: [device=tpu]\n" + STAGES)
    r = run_hanorec("experiment", "run", f, cwd=tmp_path)
    _refused(r, tmp_path, "grid", [f"{f}:3: settings[0]: device=tpu: unknown device 'tpu'"])


def test_the_report_states_the_candidates_each_dataset_was_scored_on(tmp_path):
    f = tmp_path/"grid.yaml"
    f.write_text("datasets:\n  ten: {synthetic: {users: 40, items: 60, candidates: 10}}\n  twenty: {synthetic: {users: 40, items: 60}}\n"
                 "stages:\n  - {name: popularity, settings: [model=popularity]}\n")
    r = run_hanorec("experiment", "run", f, "--device", "cpu", cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr
    report = (tmp_path/"grid"/"report.md").read_text()
    assert "(fixed candidates: target + 9 on ten; target + 19 on twenty; ties against the target)" in report
    assert "target + 19," not in report


def test_a_python_grid_that_overrides_a_key_reports_from_its_grid_yaml(tmp_path):
    # A grid built in Python may append an override to a stage's list (the ablation does); its grid.yaml says each key once
    from hanorec.runner import Stage
    from hanorec.grid import Grid, grid_dict, load_grid
    import yaml
    g = Grid("python", {"world": {"synthetic": {"users": 40}}}, [Stage("sft", "sft", ["model=seqrec", "optim.lr=1e-3", "optim.lr=1e-4"])])
    (tmp_path/"grid.yaml").write_text(yaml.safe_dump(grid_dict(g), sort_keys=False))
    assert load_grid(tmp_path/"grid.yaml").stages[0].settings == ["model=seqrec", "optim.lr=1e-4"]


def test_report_on_a_folder_without_a_grid(tmp_path):
    r = run_hanorec("experiment", "report", tmp_path, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"{tmp_path} holds no grid (grid.yaml is missing)" in r.stderr and "hint: give the --out folder" in r.stderr


def test_report_on_a_grid_with_no_finished_cell(tmp_path):
    (tmp_path/"grid.yaml").write_text(WORLD + STAGES)  # what experiment run writes first, before any cell
    (tmp_path/"world"/"seed-0"/"sft").mkdir(parents=True)  # a cell that was started and stopped
    r = run_hanorec("experiment", "report", tmp_path, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"no cell of {tmp_path} has finished yet" in r.stderr
    assert f"hint: run hanorec experiment run {tmp_path/'grid.yaml'} --out {tmp_path}" in r.stderr
    assert not (tmp_path/"report.md").exists()


def test_report_on_a_grid_with_some_cells_finished(tmp_path):
    grid = tmp_path/"grid.yaml"
    grid.write_text(WORLD + "stages:\n  - {name: popularity, settings: [model=popularity]}\n")
    r = run_hanorec("experiment", "run", grid, "--device", "cpu", cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr
    (tmp_path/"grid"/"grid.yaml").write_text(WORLD + "seeds: [0, 1]\nstages:\n  - {name: popularity, settings: [model=popularity]}\n")
    r = run_hanorec("experiment", "report", tmp_path/"grid", cwd=tmp_path)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    report = (tmp_path/"grid"/"report.md").read_text()
    assert "**1 of 2 cells have not finished yet**, so this report shows the other 1. Not finished: world seed 1 popularity." in report
    assert "| popularity | 1 | 40 |" in report


def test_every_shipped_grid_file_loads():
    from hanorec.grid import load_grid
    files = sorted((ROOT/"nbs"/"grids").glob("*.yaml"))
    assert files
    for f in files:
        g = load_grid(f)
        assert g.stages and g.datasets, f
