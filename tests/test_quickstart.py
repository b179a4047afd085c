"The quickstart's tasks in two worker processes, each stage after what it waits on, as `hanorec quickstart` runs them on a CPU."
import os
import re

import pytest

from hanorec.core import HanorecError
from hanorec.experiments import last_quickstart, quickstart, report_rows
from hanorec.runner import Stage
from hanorec.synthetic import prepare_synthetic

LM = ["model=composed-tiny", "history=3", "prompt_candidates=5", "optim.batch_size=4", "eval.users=4", "eval.every=0"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("qs")
    prepare_synthetic(d/"data", users=40, items=60, seed=0)
    return d


def _stages(lm_settings):
    return [Stage("popularity", "popularity", ["model=popularity"]),
            Stage("encoder-sft", "encoder, SFT", ["model=seqrec", "optim.epochs=2", "optim.batch_size=16"]),
            Stage("encoder-dpo", "encoder, DPO", ["init=encoder-sft", "objective=dpo", "optim.max_steps=2", "eval.every=0"],
                  start="encoder-sft"),
            Stage("lm-sft", "tiny MLLM, SFT", [*LM, *lm_settings], users=4, budget="2 steps")]


def test_two_workers_run_every_stage_after_what_it_waits_on(world, capfd, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the user ran it: the record for `hanorec demo` goes here
    stages = _stages(["optim.max_steps=2"])
    report = quickstart(world, device="cpu", stages=stages, jobs=2)
    assert last_quickstart() == world and last_quickstart(tmp_path) == world  # the demo started in this directory opens it
    out = capfd.readouterr().out
    assert "5 tasks in 2 worker processes" in out, out
    pids = set(re.findall(r"; process (\d+),", out))
    assert len(pids) == 2 and str(os.getpid()) not in pids, out  # two workers, neither of them this process
    announced = dict(re.findall(r"\[quickstart\] (\d)/5 (\S+) \(", out))
    assert sorted(announced.values()) == sorted(["features", *(s.name for s in stages)]) and announced["1"] == "features", out  # longest chain first
    for s in stages:  # each stage was announced, trained and evaluated
        assert f"{s.name} ({s.about})" in out, out
        assert (world/s.name/"metrics.json").exists() and (world/s.name/"eval"/"test-sampled"/"metrics.json").exists()
    # a continuing stage started after its start had finished; a stage reading the features after they were made
    assert (world/"encoder-dpo"/"config.yaml").stat().st_mtime >= (world/"encoder-sft"/"metrics.json").stat().st_mtime
    assert (world/"lm-sft"/"config.yaml").stat().st_mtime >= max(p.stat().st_mtime for p in (world/"data"/"features").rglob("*"))
    text = report.read_text()
    assert all(s.about in text for s in stages), text
    rows = report_rows(stages, world)
    assert rows.users.tolist()[-1] == 4 and rows.users.tolist()[0] == rows.users.tolist()[1] > 4


def test_a_failing_stage_is_reported_and_the_others_finish(tmp_path, world, capfd):
    import shutil
    shutil.copytree(world/"data", tmp_path/"data")
    stages = _stages(["optim.max_steps=-1"])  # refused by the trainer, in the language model's worker
    with pytest.raises(HanorecError, match="optim.max_steps=-1 is below 0"):
        quickstart(tmp_path, device="cpu", stages=stages, jobs=2)
    assert "[quickstart] lm-sft stopped:" in capfd.readouterr().out
    assert (tmp_path/"encoder-dpo"/"metrics.json").exists() and not (tmp_path/"report.md").exists()


def test_stages_that_wait_on_each_other_in_a_circle_are_refused(tmp_path, world):
    import shutil
    shutil.copytree(world/"data", tmp_path/"data")
    stages = [Stage("a", "a", ["init=b", "objective=dpo"], start="b"), Stage("b", "b", ["init=a", "objective=dpo"], start="a")]
    with pytest.raises(HanorecError, match="wait on each other in a circle"):
        quickstart(tmp_path, device="cpu", stages=stages, jobs=2)
    assert not (tmp_path/"a").exists() and not (tmp_path/"b").exists()
