"The quickstart's lanes side by side in worker processes, as `hanorec quickstart` runs them on a CPU."
import os
import re

import pytest

from hanorec.core import HanorecError
from hanorec.experiments import Stage, quickstart, report_rows
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
            Stage("lm-sft", "tiny MLLM, SFT", [*LM, *lm_settings], users=4, budget="2 steps", lane="language model")]


def test_lanes_run_side_by_side_and_report_every_stage(world, capfd):
    stages = _stages(["optim.max_steps=2"])
    report = quickstart(world, device="cpu", stages=stages, jobs=2)
    out = capfd.readouterr().out
    assert "2 lanes (encoders, language model) side by side" in out, out
    pids = dict(re.findall(r"\[quickstart\] (encoders|language model) lane: process (\d+)", out))
    assert len(pids) == 2 and len(set(pids.values())) == 2 and str(os.getpid()) not in pids.values(), out  # two workers
    for s in stages:  # each lane's worker printed its own progress line, and each stage was trained and evaluated
        assert f"{s.name} ({s.about})" in out, out
        assert (world/s.name/"metrics.json").exists()
    text = report.read_text()
    assert all(s.about in text for s in stages), text
    rows = report_rows(stages, world)
    assert rows.users.tolist()[-1] == 4 and rows.users.tolist()[0] == rows.users.tolist()[1] > 4


def test_a_failing_lane_is_reported_and_the_other_lane_finishes(tmp_path, world, capfd):
    import shutil
    shutil.copytree(world/"data", tmp_path/"data")
    stages = _stages(["optim.max_steps=-1"])  # refused by the trainer, in the language model's worker
    with pytest.raises(HanorecError, match="optim.max_steps=-1 is below 0"):
        quickstart(tmp_path, device="cpu", stages=stages, jobs=2)
    assert "the language model lane stopped" in capfd.readouterr().out
    assert (tmp_path/"encoder-sft"/"metrics.json").exists() and not (tmp_path/"report.md").exists()


def test_a_stage_cannot_wait_on_an_unfinished_stage_of_the_other_lane(tmp_path, world):
    import shutil
    shutil.copytree(world/"data", tmp_path/"data")
    stages = [*_stages(["optim.max_steps=2"]),
              Stage("lm-dpo", "x", ["init=encoder-sft", "objective=dpo"], start="encoder-sft", lane="language model")]
    with pytest.raises(HanorecError, match="continues encoder-sft, which runs in lane encoders"):
        quickstart(tmp_path, device="cpu", stages=stages, jobs=2)
