"The quickstart's lanes side by side in worker processes, as `hanorec quickstart` runs them on a CPU."
from pathlib import Path

from hanorec.experiments import Stage, quickstart, report_rows
from hanorec.synthetic import prepare_synthetic


def test_lanes_run_side_by_side_and_report_every_stage(tmp_path, capfd):
    prepare_synthetic(tmp_path/"data", users=40, items=60, seed=0)
    lm = ["model=composed-tiny", "history=3", "prompt_candidates=5", "optim.batch_size=4", "eval.users=4", "eval.every=0"]
    stages = [Stage("popularity", "popularity", ["model=popularity"]),
              Stage("encoder-sft", "encoder, SFT", ["model=seqrec", "optim.epochs=2", "optim.batch_size=16"]),
              Stage("lm-sft", "tiny MLLM, SFT", [*lm, "optim.max_steps=2"], users=4, budget="2 steps", lane="language model")]
    report = quickstart(tmp_path, device="cpu", stages=stages, jobs=2)
    out = capfd.readouterr().out
    assert "2 lanes (encoders, language model) side by side" in out, out
    for s in stages:  # each lane's worker printed its own progress line, and each stage was trained and evaluated
        assert f"{s.name} ({s.about})" in out, out
        assert (tmp_path/s.name/"metrics.json").exists()
    text = report.read_text()
    assert all(s.about in text for s in stages), text
    rows = report_rows(stages, tmp_path)
    assert rows.users.tolist()[-1] == 4 and rows.users.tolist()[0] == rows.users.tolist()[1] > 4
