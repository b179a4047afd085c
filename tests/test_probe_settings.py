"""The settings corpus: every bad training or evaluation setting the probe of issue 25 met, with its exact answer.

The promise for each: exit code 2 and one error that names the key (and its value), then a hint with the fix; no
traceback, and no run folder written. And the small catalog (8 items) the probe's RoDPO run died on: its defaults are
lowered to fit and it trains, while a value the user set that cannot fit is refused with the largest that does.
"""
import json

import pytest

from conftest import PROBE_ENV as ENV, refused as _refused, run_hanorec, tiny_sft, tiny_world
from hanorec.cli import main



@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    "A synthetic world of 8 items and 12 users (each has met 4 items), and an encoder SFT run on it (3 steps)."
    d = tmp_path_factory.mktemp("probe")
    tiny_sft(tiny_world(d/"data"), d/"sft")
    return d


# (settings, what the error says: the key=value, and the fix)
BAD_SETTINGS = [
    (["model=seqrec", "history=0"], "history=0 is below 1", "set history within [1, inf)"),
    (["model=seqrec", "seqrec.history=0"], "seqrec.history=0 is below 1", "seqrec.history=50"),
    (["model=seqrec", "seed=-1"], "seed=-1 is below 0", "set seed within [0, 4294967295]"),
    (["model=seqrec", "seed=4294967296"], "seed=4294967296 is above 4294967295", "set seed within"),
    (["model=seqrec", "optim.batch_size=0"], "optim.batch_size=0 is below 1", "optim.batch_size=8"),
    (["model=seqrec", "eval.batch_size=-3"], "eval.batch_size=-3 is below 1", "eval.batch_size=8"),
    (["model=seqrec", "seqrec.dropout=1"], "seqrec.dropout=1.0 must be below 1", "seqrec.dropout=0.2"),
    (["model=seqrec", "min_history=11"], "min_history=11 is above history=10", "set min_history to 10 or less"),
    (["model=seqrec", "seqrec.heads=3"], "seqrec.hidden=64 is not divisible by seqrec.heads=3", "seqrec.heads=1"),
    (["model=composed-tiny", "lora.dropout=1.5"], "lora.dropout=1.5 is above 1", "lora.dropout=0.05"),
    (["model=composed-tiny", "lora.r=0"], "lora.r=0 is below 1", "lora.r=8"),
    (["model=seqrec", "prompt_candidates=500"], "prompt_candidates=500 is a language model's setting", "drop prompt_candidates="),
    (["model=seqrec", "gradient_checkpointing=true"], "gradient_checkpointing=true is a language model's setting", "drop gradient_checkpointing="),
    (["model=composed-tiny", "seqrec.hidden=32"], "seqrec.hidden=32 is a sequential encoder's setting", "drop seqrec.hidden="),
    (["model=seqrec", "optim.max_steps=20", "optim.epochs=3"], "optim.max_steps=20 and optim.epochs=3.0 both say how long to train",
     "drop optim.epochs (or set optim.epochs=0) to train 20 steps"),
    (["model=composed-tiny", "prompt_candidates=20"], "prompt_candidates=20 does not fit", "has 8 items", "set prompt_candidates=5 (the largest that fits)"),
]
PREFERENCE = [  # on the SFT run: init=
    (["objective=dpo", "beta=0"], "beta=0.0 must be above 0", "beta=0.1"),
    (["objective=dpo", "negatives.k=0"], "negatives.k=0 is below 1", "negatives.k=1"),
    (["objective=dpo", "negatives.k=9"], "negatives.k=9 does not fit", "set negatives.k=4 (the largest that fits)"),
    (["objective=dpo", "negatives.strategy=stochastic_topk", "negatives.pool_size=20"], "negatives.pool_size=20 does not fit",
     "user u", "has interacted with 4 of them", "set negatives.pool_size=4 (the largest that fits)"),
    (["objective=dpo", "negatives.strategy=stochastic_topk", "negatives.k=3", "negatives.pool_size=2"],
     "negatives.k=3 negatives cannot be drawn from a pool of negatives.pool_size=2", "set negatives.pool_size to 3 or more"),
    (["objective=dpo", "seqrec.images=true"], "seqrec.images=true is an encoder's shape", "continues the init run's encoder"),
    (["objective=hanorec", "hars.top_k=8"], "hars.top_k=8 does not fit", "set hars.top_k=7"),
    (["objective=hanorec", "hars.beta0=-1"], "hars.beta0=-1.0 is below 0", "hars.beta0=0.1"),
]


@pytest.mark.parametrize("settings,said", [(s, said) for s, *said in BAD_SETTINGS], ids=lambda x: " ".join(x) if isinstance(x, list) else None)
def test_a_bad_setting_is_refused_before_anything_is_written(tiny, capsys, settings, said):
    out = tiny/"refused"
    _refused(capsys, ["train", f"data={tiny/'data'}", f"out={out}", *settings], *said)
    assert not out.exists()


@pytest.mark.parametrize("settings,said", [(s, said) for s, *said in PREFERENCE], ids=lambda x: " ".join(x) if isinstance(x, list) else None)
def test_a_bad_preference_setting_is_refused_before_anything_is_written(tiny, capsys, settings, said):
    out = tiny/"refused-pref"
    _refused(capsys, ["train", f"data={tiny/'data'}", f"init={tiny/'sft'}", f"out={out}", *settings], *said)
    assert not out.exists()


def test_evaluate_refuses_a_batch_size_below_one(tiny, capsys):
    for bad in ("-3", "0"):
        _refused(capsys, ["evaluate", tiny/"sft", "--batch-size", bad], f"--batch-size must be at least 1, got {bad}", "eval.batch_size")
    assert not (tiny/"sft"/"eval").exists()


def test_the_synthetic_world_names_the_setting(tmp_path, capsys):
    _refused(capsys, ["data", "prepare", "synthetic", "--users", 5, "--items", 8, "--observe-prob", 0, "--out", tmp_path/"w"],
             "observe_prob=0", "set observe_prob within (0, 1]")
    assert not (tmp_path/"w").exists()


def test_resume_names_the_setting_that_changed_and_resumes_when_none_did(tiny, capsys):
    _refused(capsys, ["train", "--resume", f"out={tiny/'sft'}", "optim.lr=2e-5"],
             f"optim.lr: 0.002 in {tiny/'sft'/'config.yaml'}, 2e-05 now", "hanorec train --resume out=")
    r = run_hanorec("train", "--resume", f"out={tiny/'sft'}", env=ENV)  # data= comes from the run's config.yaml
    assert r.returncode == 0 and "no dataset given" not in r.stderr, r.stderr
    assert "finished already" in r.stderr and "run: " in r.stdout


def test_rodpo_and_hanorec_on_an_eight_item_catalog_train_with_their_defaults_lowered(tiny):
    rodpo = run_hanorec("train", f"data={tiny/'data'}", f"init={tiny/'sft'}", f"out={tiny/'rodpo'}", "objective=dpo",
                        "negatives.strategy=stochastic_topk", "optim.max_steps=3", "optim.batch_size=4", "eval.every=0", env=ENV)
    assert rodpo.returncode == 0, rodpo.stderr
    assert "(3 steps, dpo, negatives stochastic_topk" in rodpo.stdout
    assert "negatives.pool_size=4 (defaults lowered to fit)" in rodpo.stderr and "Traceback" not in rodpo.stderr
    assert "pool_size: 4" in (tiny/"rodpo"/"config.yaml").read_text()  # config.yaml records what ran
    han = run_hanorec("train", f"data={tiny/'data'}", f"init={tiny/'sft'}", f"out={tiny/'han'}", "objective=hanorec", "nodo.sigma=0.1",
                      "nodo.mode=logits", "optim.max_steps=2", "optim.batch_size=4", "eval.every=0", env=ENV)
    assert han.returncode == 0, han.stderr
    assert "hars.top_k=7" in han.stderr


def test_an_explicit_step_count_wins_over_the_recipes_epochs(tiny):
    r = run_hanorec("train", f"data={tiny/'data'}", f"out={tiny/'steps'}", "model=seqrec", "optim.max_steps=5", "optim.batch_size=4",
                    "eval.every=0", env=ENV)
    assert r.returncode == 0, r.stderr
    assert "(5 steps, sft" in r.stdout
    steps = [json.loads(line) for line in (tiny/"steps"/"log.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps if "split" not in s] == [1, 2, 3, 4, 5]


def test_a_file_that_repeats_the_defaults_or_a_runs_own_config_is_accepted(tiny, tmp_path, capsys):
    "Only what a file changes counts as set: --print-config's output and a continuing run's config.yaml train as they are."
    from hanorec.settings import train_config
    assert main(["train", "--print-config", "model=seqrec", f"data={tiny/'data'}"]) == 0
    (tmp_path/"printed.yaml").write_text(capsys.readouterr().out)
    cfg = train_config(tmp_path/"printed.yaml", [f"out={tmp_path/'a'}"])  # optim.max_steps beside the recipe's epochs: not both "given"
    assert (cfg.optim.epochs, cfg.model) == (20, "seqrec")
    (tmp_path/"utf16.yaml").write_bytes("model: seqrec\noptim: {max_steps: 7}\n".encode("utf-16"))
    cfg = train_config(tmp_path/"utf16.yaml", [f"data={tiny/'data'}"])
    assert (cfg.optim.max_steps, cfg.optim.epochs) == (7, 0)  # read through the strict loader, and the step count wins
    # a continuing encoder that repeats its init run's shape (a grid's shared settings do) is accepted; a change is refused above
    r = run_hanorec("train", f"data={tiny/'data'}", f"init={tiny/'sft'}", f"out={tiny/'dpo-same'}", "objective=dpo", "seqrec.images=false",
                    "seqrec.hidden=64", "optim.max_steps=1", "optim.batch_size=4", "eval.every=0", env=ENV)
    assert r.returncode == 0, r.stderr
    cfg = train_config(tiny/"dpo-same"/"config.yaml", [f"out={tmp_path/'b'}"])
    assert cfg.init == str(tiny/"sft") and cfg.objective == "dpo"
