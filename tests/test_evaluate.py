"""`hanorec evaluate` and `hanorec compare` on runs trained as a user trains them: the trainer's numbers reproduced, an
independent implementation (pytrec_eval) agreeing, the full catalog's two variants, seed groups, the language-model protocols."""
import contextlib, io, json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import run_hanorec
from hanorec.cli import main
from hanorec.core import HanorecError, Purpose, read_json, sample_rng
from hanorec.data import load_prepared, load_samples
from hanorec.evaluation import (PROTOCOLS, TIES, compare_runs, earlier_items, eval_dir, evaluate_run, full_catalog_ranks,
                                user_metrics)
from hanorec.metrics import target_ranks

TRAINER_METRICS = ["hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10", "mrr@5", "mrr@10"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    "A synthetic world; a sequential encoder trained under two seeds; a tiny composed MLLM trained multiple-choice and yes/no."
    d = tmp_path_factory.mktemp("evaluate")
    r = run_hanorec("data", "prepare", "synthetic", "--out", d/"data", "--users", 80, "--items", 100)
    assert r.returncode == 0, r.stderr
    for seed in (0, 1):
        r = run_hanorec("train", f"data={d/'data'}", f"out={d/f'seed{seed}'}", "model=seqrec", f"seed={seed}", "optim.epochs=0",
                        "optim.max_steps=20", "optim.batch_size=16", "eval.every=10", "eval.users=20")
        assert r.returncode == 0, r.stderr
    r = run_hanorec("train", f"data={d/'data'}", f"out={d/'popularity'}", "model=popularity", "eval.users=20")
    assert r.returncode == 0, r.stderr
    lm = [f"data={d/'data'}", "model=composed-tiny", "prompt_candidates=5", "history=3", "optim.max_steps=2", "optim.batch_size=4", "eval.users=4"]
    for name, task in (("choice", "multiple_choice"), ("yes_no", "yes_no")):
        r = run_hanorec("train", *lm, f"task={task}", f"out={d/name}")
        assert r.returncode == 0, r.stderr
    return d


def cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def trainer_eval_users(run: Path) -> np.ndarray:
    "The validation (and test) sample indices the trainer scored: its seeded subset of eval.users."
    cfg = yaml.safe_load((run/"config.yaml").read_text())
    val = load_samples(load_prepared(cfg["data"]), "validation", cfg["history"], 0)
    n = cfg["eval"]["users"] or len(val)
    return np.sort(sample_rng(cfg["seed"], Purpose.EVAL_USERS).choice(len(val), min(n, len(val)), replace=False))


@pytest.mark.parametrize("name", ["seed0", "popularity"])
def test_evaluate_reproduces_the_trainers_metrics_on_its_users(world, name):
    run = world/name
    r = run_hanorec("evaluate", run)
    assert r.returncode == 0, r.stderr
    assert "ties count against the target (pessimistic)" in r.stdout and str(eval_dir(run)) in r.stdout
    table = pd.read_parquet(eval_dir(run)/"ranks.parquet")
    test = load_samples(load_prepared(world/"data"), "test", 10, 0)
    assert table.user_id.tolist() == test.users.tolist()                       # every user of the split, in its order
    written = read_json(eval_dir(run)/"metrics.json")
    assert (written["protocol"], written["split"], written["users"], written["users_limit"]) == ("sampled", "test", len(test), None)
    assert written["ties"] == TIES and set(written["metrics"]) == set(PROTOCOLS["sampled"].metrics)
    assert all(m["low"] <= m["value"] <= m["high"] for m in written["metrics"].values())
    mine = user_metrics(table["rank"].to_numpy()[trainer_eval_users(run)], TRAINER_METRICS).mean()
    trainer = read_json(run/"metrics.json")["test"]
    assert trainer["users"] == 20
    assert {m: mine[m] for m in TRAINER_METRICS} == {m: trainer[m] for m in TRAINER_METRICS}   # exactly


def _pytrec(scores: np.ndarray, target: np.ndarray) -> dict:
    import pytrec_eval
    qrels = {f"u{u}": {f"d{t}": 1} for u, t in enumerate(target)}
    run = {f"u{u}": {f"d{c}": float(s) for c, s in enumerate(row)} for u, row in enumerate(scores)}
    return pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.5,10", "success.1,5,10", "recip_rank"}).evaluate(run)


@pytest.mark.parametrize("source", ["random", "run"])
def test_metrics_agree_with_pytrec_eval(world, source):
    if source == "random":
        rng = np.random.default_rng(0)
        scores, target = rng.normal(size=(300, 20)), rng.integers(0, 20, 300)
    else:  # the trained run's own stored score matrix
        evaluate_run(world/"seed0")
        table = pd.read_parquet(eval_dir(world/"seed0")/"ranks.parquet")
        scores, target = np.stack(table.scores.to_numpy()), table.target_index.to_numpy().copy()
    assert all(len(np.unique(row)) == len(row) for row in scores)  # no ties: trec_eval breaks them its own way
    ranks = target_ranks(scores, target)
    if source == "run": assert ranks.tolist() == table["rank"].tolist()
    mine = user_metrics(ranks, ["hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10", "mrr@10", "mrr@20"])
    theirs = _pytrec(scores, target)
    for u in range(len(scores)):
        t = theirs[f"u{u}"]
        for k in (1, 5, 10): assert mine[f"hr@{k}"][u] == t[f"success_{k}"]
        for k in (5, 10): assert mine[f"ndcg@{k}"][u] == pytest.approx(t[f"ndcg_cut_{k}"], abs=1e-12)
        assert mine["mrr@20"][u] == pytest.approx(t["recip_rank"], abs=1e-12)                # 20 candidates: no cut-off
        assert mine["mrr@10"][u] == pytest.approx(t["recip_rank"] * t["success_10"], abs=1e-12)


def test_full_catalog_with_and_without_earlier_items(world):
    scores = np.array([[0.9, 0.8, 0.7, 0.1, 0.7], [0.2, 0.9, 0.5, 0.4, 0.3]])
    excluded, included = full_catalog_ranks(scores, [2, 3], [np.array([0, 2]), np.array([1, 2])])
    assert excluded.tolist() == [3, 1] and included.tolist() == [4, 3]       # ties (item 4, user 0) count against the target
    result = evaluate_run(world/"seed0", protocol="full")
    assert set(result["metrics"]) == set(PROTOCOLS["full"].metrics) and set(result["variants"]) == {"excluded", "included"}
    assert result["candidates"] == 100
    table = pd.read_parquet(eval_dir(world/"seed0", protocol="full")/"ranks.parquet")
    assert len(table) == 80 and (table.rank_excluded <= table.rank_included).all() and (table.rank_excluded < table.rank_included).any()
    m = {k: v["value"] for k, v in result["metrics"].items()}
    for base in ("hr@10", "ndcg@10", "mrr@10", "hr@20"): assert m[f"{base}/excluded"] >= m[f"{base}/included"]
    ds = load_prepared(world/"data")
    test = load_samples(ds, "test", 1000, 0)
    for e, h, p in zip(earlier_items(ds, test), test.history, test.position):  # every earlier item, oldest first; the history is its tail
        assert len(e) == p and e[len(e) - len(h):].tolist() == h.tolist()


def test_compare_groups_seeds_and_the_baseline_against_itself_is_no_difference(world):
    runs = [world/"seed0", world/"seed1"]
    table = compare_runs(runs, metrics=["hr@5", "ndcg@5"])
    groups = table[table.kind == "seeds"]
    assert groups.run.unique().tolist() == ["seed0 (seeds 0, 1)"] and groups.seeds.unique().tolist() == ["0,1"]
    per_run = table[(table.kind == "run") & (table.metric == "ndcg@5")].value.to_numpy()
    assert groups[groups.metric == "ndcg@5"].value.iloc[0] == pytest.approx(per_run.mean())
    assert groups[groups.metric == "ndcg@5"].sd.iloc[0] == pytest.approx(per_run.std(ddof=1))
    baseline = table[(table.kind == "run") & (table.run == "seed0")]
    assert (baseline.difference == 0).all() and (baseline.p_value == 1).all()  # the baseline against itself: no difference
    with pytest.raises(HanorecError, match="given twice"): compare_runs([world/"seed0", world/"seed0"])
    code, out, err = cli("compare", *runs, "--metrics", "hr@5", "--out", world/"cmp.md")
    assert code == 0, err
    assert "seed0 (seeds 0, 1)" in out and "paired bootstrap over users" in out
    assert "(baseline)" in (world/"cmp.md").read_text()


def test_language_model_protocols(world):
    code, out, err = cli("evaluate", world/"yes_no", "--protocol", "yes_no", "--users", 5)
    assert code == 0, err
    yn = read_json(eval_dir(world/"yes_no", protocol="yes_no")/"metrics.json")
    assert (yn["users"], yn["users_limit"], sorted(yn["metrics"])) == (5, 5, ["auc", "hr@5", "mrr@5", "ndcg@5"])
    assert 0 <= yn["metrics"]["auc"]["value"] <= 1 and "the first 5 of 80" in out
    code, out, err = cli("evaluate", world/"choice", "--protocol", "generate", "--users", 5)
    assert code == 0, err
    gen = read_json(eval_dir(world/"choice", protocol="generate")/"metrics.json")
    assert set(gen["metrics"]) == {"valid_ratio", "hr@1/valid", "hr@1/all"} and "LLaRA" in gen["hr_at_1"]["valid"]
    answers = pd.read_parquet(eval_dir(world/"choice", protocol="generate")/"ranks.parquet")
    assert len(answers) == 5 and {"answer", "choice", "valid", "hit"} <= set(answers.columns)
    assert gen["metrics"]["valid_ratio"]["value"] == answers.valid.mean()
    assert gen["metrics"]["hr@1/all"]["value"] == answers.hit.mean()


def test_errors_name_the_problem_and_the_fix(world, tmp_path):
    for argv, expected in [((world/"choice", "--protocol", "yes_no"), "use --protocol sampled or generate"),
                           ((world/"yes_no", "--protocol", "full"), "use --protocol sampled or yes_no"),
                           ((world/"seed0", "--protocol", "generate"), "use --protocol sampled or full"),
                           ((world/"data",), "is a prepared dataset, not a finished run")]:
        code, out, err = cli("evaluate", *argv)
        assert code == 2 and expected in err and "hint:" in err, err
    unfinished = tmp_path/"unfinished"
    unfinished.mkdir()
    (unfinished/"config.yaml").write_text((world/"seed0"/"config.yaml").read_text())
    (unfinished/"base.json").write_text(json.dumps({"kind": "seqrec"}))
    code, out, err = cli("evaluate", unfinished)
    assert code == 2 and "model is missing" in err and "--resume" in err
    evaluate_run(world/"seed1", users=3)
    code, out, err = cli("compare", world/"seed0", world/"seed1")
    assert code == 2 and "the user sets differ" in err and "--users 3" in err
