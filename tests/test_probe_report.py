"The quickstart's report says what each stage did, config.yaml records what ran, and compare's tests are corrected (issue 25's probe)."
import pytest
import yaml

from hanorec.core import read_json
from hanorec.evaluation import compare_runs, format_comparison, holm, markdown_table
from hanorec.experiments import quickstart
from hanorec.runner import Stage, stale_settings
from hanorec.synthetic import prepare_synthetic


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    "A tiny quickstart: an encoder reading posters, a DPO stage that trains, and one at lr 0 that cannot move its weights."
    out = tmp_path_factory.mktemp("report")
    prepare_synthetic(out/"data", users=40, items=60, seed=0)
    stages = [Stage("popularity", "popularity", ["model=popularity"]),
              Stage("encoder-sft", "encoder, SFT", ["model=seqrec", "seqrec.images=true", "optim.epochs=2", "optim.batch_size=16"]),
              Stage("encoder-frozen", "encoder, DPO at lr 0", ["init=encoder-sft", "objective=dpo", "optim.lr=0", "optim.max_steps=2", "eval.every=0"],
                    start="encoder-sft"),
              Stage("encoder-dpo", "encoder, DPO", ["init=encoder-sft", "objective=dpo", "optim.max_steps=3", "optim.lr=1e-3", "eval.every=0"],
                    start="encoder-sft")]
    report = quickstart(out, device="cpu", stages=stages, jobs=1, remember_in=out)  # recorded in its own folder, not the checkout
    return out, stages, report.read_text()


def test_a_continuing_stage_records_the_encoder_it_continues(tiny):
    out, stages, _ = tiny
    saved = yaml.safe_load((out/"encoder-dpo"/"config.yaml").read_text())
    assert saved["model"] == "seqrec" and saved["seqrec"]["images"] is True  # its start's encoder reads posters; the default says false
    assert saved["seqrec"] == yaml.safe_load((out/"encoder-sft"/"config.yaml").read_text())["seqrec"]
    assert stale_settings(stages[3], out/"data", out) == {}  # the recorded start's settings do not make the stage look stale


def test_the_report_says_what_each_stage_did(tiny):
    out, _, text = tiny
    notes = text[text.index("## What each stage did"):]
    env = read_json(out/"encoder-dpo"/"metrics.json")["environment"]
    code = env["code"] if env["code"].startswith("hanorec ") else f"commit {env['code'][:12]}"
    assert f"Code, machine and precision: {code}" in notes and f"{env['cpu']}, {env['cores']} cores" in notes and "fp32 on cpu" in notes
    assert "`model=seqrec" in notes and "seqrec.images=true" in notes and "optim.epochs=2" in notes  # the SFT stage's settings
    dpo = read_json(out/"encoder-dpo"/"metrics.json")["trained"]
    assert f"(`encoder-dpo`, continues encoder-sft): 3 steps of {dpo['samples_per_step']} samples = {dpo['epochs']:.2f} epochs" in notes
    assert dpo["weights_moved"]["kept"] > 0 and f"weights moved {dpo['weights_moved']['kept']:.2e} of their norm" in notes
    frozen = notes.split("`encoder-frozen`")[1].split("\n- ")[0]
    assert "weights moved 0.00e+00 of their norm" in frozen and "reward margin 0.0000, preference accuracy" in frozen
    users = read_json(out/"encoder-sft"/"eval"/"test-sampled"/"metrics.json")["users"]
    assert f"It ranks the target exactly as encoder-sft for all {users} users." in frozen  # lr 0: the same ranking as its start
    assert "ranks the target exactly" not in notes.split("`encoder-dpo`")[1]  # a stage that moved is not said to
    assert "Holm–Bonferroni over all 8 tests below" in text and "Holm " in text.split("Preference stages against their SFT start:")[1]
    assert "What each stage did" in (out/"report.html").read_text()


def test_compare_marks_significance_after_holm(tiny):
    out, _, _ = tiny
    table = compare_runs([out/"popularity", out/"encoder-sft", out/"encoder-dpo"], metrics=["hr@1", "hr@5", "ndcg@5"])
    tested = table[table.run != "popularity"]
    assert table[table.run == "popularity"].p_holm.isna().all() and len(tested) == 6
    assert (tested.p_holm.to_numpy() == holm(tested.p_value.to_numpy())).all()
    for r in tested.itertuples():  # the interval and the p-value come from the same draws
        assert (r.diff_low > 0 or r.diff_high < 0) == (r.p_value < 0.05)
    assert "Holm–Bonferroni over all 6 tests of this table" in markdown_table(table) and "Holm p" in format_comparison(table)
