"""The evaluation corpus of issue 25's probe: `evaluate` and `compare` given what is not a finished run, `compare` given
too few runs or a metric the candidates leave meaningless, and training settings the stage's objective never reads.

The promise for a bad input: exit code 2 and one error naming the folder, run or metric, then a hint with the fix, and
nothing scored (no `eval/` folder written). A setting the objective never reads is a warning line naming the key and the
objectives that read it (a grid's stages share settings across objectives), and the stage still trains.
"""
import shutil

import pytest

from conftest import PROBE_ENV as ENV, refused as _refused, run_hanorec, tiny_sft, tiny_world
from hanorec.cli import main



@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    "A synthetic world of 8 items (4 candidates per user), an encoder SFT run on it (3 steps), and a copy of that run."
    d = tmp_path_factory.mktemp("probe_eval")
    tiny_sft(tiny_world(d/"data"), d/"runs"/"sft")
    shutil.copytree(d/"runs"/"sft", d/"runs"/"other")
    (d/"unfinished").mkdir()
    shutil.copy(d/"runs"/"sft"/"config.yaml", d/"unfinished"/"config.yaml")
    return d


NOT_A_RUN = [  # (the folder under tiny, what the error and its hint say)
    ("data", "data is a prepared dataset, not a finished run", "hanorec train data="),
    ("nowhere", "nowhere: no such folder", "give a folder made by hanorec train out="),
    ("runs/sft/model", "model is not a run folder (no config.yaml)", "give the run folder itself:"),
    ("runs", "runs is not a run folder (no config.yaml)", "it holds run folders: give one of them"),
    ("unfinished", "is not a finished run (base.json is missing)", "finish it first: hanorec train --resume out="),
]


@pytest.mark.parametrize("folder,said", [(f, said) for f, *said in NOT_A_RUN], ids=[f for f, *_ in NOT_A_RUN])
def test_evaluate_says_what_the_folder_is_instead_of_a_run(tiny, capsys, folder, said):
    err = _refused(capsys, ["evaluate", tiny/folder], *said)
    if folder != "unfinished": assert "--resume" not in err  # "finish it first" only for a run that is not finished


@pytest.mark.parametrize("folder,said", [(f, said) for f, *said in NOT_A_RUN if f != "runs"], ids=[f for f, *_ in NOT_A_RUN if f != "runs"])
def test_compare_checks_every_run_before_scoring_any(tiny, capsys, folder, said):
    _refused(capsys, ["compare", tiny/"runs"/"sft", tiny/folder], *said)
    assert not (tiny/"runs"/"sft"/"eval").exists()


@pytest.mark.parametrize("runs,said", [(["sft"], ("compare needs a baseline and at least one other run", "only", "hanorec compare BASELINE RUN")),
                                       (["sft", "sft"], ("sft is given twice", "give each run once")),
                                       (["sft", "other", "./sft"], ("sft is given twice", "give each run once"))],
                         ids=["one run", "twice", "twice spelled differently"])
def test_compare_needs_a_baseline_and_another_run(tiny, capsys, runs, said):
    _refused(capsys, ["compare", *[tiny/"runs"/r for r in runs]], *said)
    assert not (tiny/"runs"/"sft"/"eval").exists()


@pytest.mark.parametrize("metric,said", [("ndcg@50", ("ndcg@50", "ranked among 4 candidates", "use K up to 4 (e.g. ndcg@4)")),
                                         ("hr@4", ("hr@4 or more is 1 for every user", "use K up to 3 (e.g. hr@3)")),
                                         ("bogus@3", ("unknown rank metric 'bogus@3'", "write hr@K, ndcg@K or mrr@K")),
                                         ("auc", ("the sampled protocol has no metric 'auc'", "use hr@1"))])
def test_compare_refuses_a_metric_before_scoring(tiny, capsys, metric, said):
    _refused(capsys, ["compare", tiny/"runs"/"sft", tiny/"runs"/"other", "--metrics", metric], *said)
    assert not (tiny/"runs"/"sft"/"eval").exists() and not (tiny/"runs"/"other"/"eval").exists()


def test_compare_keeps_the_metrics_the_candidates_give_meaning(tiny, capsys):
    assert main(["compare", str(tiny/"runs"/"sft"), str(tiny/"runs"/"other")]) == 0
    shown = {line.split()[0] for line in capsys.readouterr().out.splitlines()[2:] if "@" in line.split()[0]}
    kept = {"hr@1", "hr@3", "ndcg@3"}  # the protocol's default list, less what 4 candidates leave meaningless (hr@5, ndcg@5, mrr@10...)
    assert shown == kept, shown
    assert main(["compare", str(tiny/"runs"/"sft"), str(tiny/"runs"/"other"), "--metrics", "hr@3", "ndcg@4"]) == 0
    _refused(capsys, ["compare", tiny/"runs"/"sft", tiny/"runs"/"other", "--metrics", "mrr@5"], "ranked among 4 candidates")  # read from the evaluations


UNREAD = [  # (settings, what the warning names), on the SFT run as init= where the stage is a preference one
    (["model=seqrec", "negatives.strategy=stochastic_topk"],
     "negatives.strategy=stochastic_topk is read only by objective=dpo or objective=sdpo or objective=hanorec", "objective=sft never reads it"),
    (["init=SFT", "objective=dpo", "hars.beta0=0.5"], "hars.beta0=0.5 is read only by objective=hanorec;", "objective=dpo never reads it"),
    (["init=SFT", "objective=hanorec", "beta=0.5"], "beta=0.5 is read only by objective=dpo or objective=sdpo (objective=hanorec reads hars.beta0)"),
    (["model=seqrec", "sft_weight=0.5"], "sft_weight=0.5 is read only by objective=dpo or objective=sdpo or objective=hanorec"),
]


@pytest.mark.parametrize("settings,said", [(s, said) for s, *said in UNREAD], ids=lambda x: " ".join(x) if isinstance(x, list) else None)
def test_a_setting_the_objective_never_reads_is_a_warning(tiny, settings, said):
    settings = [s.replace("SFT", str(tiny/"runs"/"sft")) for s in settings]
    r = run_hanorec("train", "--print-config", f"data={tiny/'data'}", f"out={tiny/'unread'}", *settings, env=ENV)
    assert r.returncode == 0, r.stderr
    warnings = [l for l in r.stderr.splitlines() if " WARNING " in l]
    assert len(warnings) == 1 and all(s in warnings[0] for s in said), r.stderr


def test_settings_the_objective_reads_are_not_warned_about(tiny):
    "NoDO's noise applies to every objective (the ablation's DPO + NoDO row), and DPO draws negatives."
    r = run_hanorec("train", "--print-config", f"data={tiny/'data'}", f"out={tiny/'unread'}", f"init={tiny/'runs'/'sft'}", "objective=dpo",
                    "nodo.sigma=0.1", "nodo.mode=logits", "negatives.strategy=stochastic_topk", "negatives.pool_size=4", "beta=0.5", env=ENV)
    assert r.returncode == 0, r.stderr
    assert " WARNING " not in r.stderr, r.stderr
