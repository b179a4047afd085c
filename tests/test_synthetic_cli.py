"`hanorec data prepare synthetic`: the world with known preferences, prepared like any real source."
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd

from conftest import run_hanorec
from hanorec.synthetic import false_negative_mask, load_truth, step_of, true_utility


def _prepare(out, *extra):
    r = run_hanorec("data", "prepare", "synthetic", "--out", out, "--users", "120", "--items", "200", *extra)
    assert r.returncode == 0, r.stderr
    return json.loads((out / "manifest.json").read_text())


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a, b = _prepare(tmp_path / "a"), _prepare(tmp_path / "b")
    c = _prepare(tmp_path / "c", "--seed", "1")
    assert a["outputs"] == b["outputs"]
    assert any(k.startswith("truth/") for k in a["outputs"])
    assert a["outputs"]["interactions.parquet"] != c["outputs"]["interactions.parquet"]


def test_prepared_world_has_truth_that_labels_its_candidates(tmp_path):
    out = tmp_path / "w"
    _prepare(out, "--visual-signal", "0.8", "--observe-prob", "0.3")
    truth = load_truth(out)
    assert truth.config["visual_signal"] == 0.8 and truth.config["observe_prob"] == 0.3
    test = pd.read_parquet(out / "candidates" / "test.parquet")
    row = test.iloc[0]
    step = step_of(truth, row.user_id, pd.read_parquet(out / "splits" / "test.parquet").set_index("user_id").timestamp[row.user_id])
    cands = np.array(list(row.candidates))
    util = true_utility(truth, row.user_id, step, cands)
    fn = false_negative_mask(truth, row.user_id, step, cands)
    assert util.shape == fn.shape == (20,)
    assert not fn[row.target_index]  # the positive is never its own false negative
    # every negative whose true utility is at least the positive's is labelled a false negative
    assert fn[(util >= util[row.target_index]) & (np.arange(20) != row.target_index)].all()


def test_prepare_synthetic_in_a_fresh_process(tmp_path):
    "The loader table knows `synthetic` by name: no import of hanorec.synthetic is needed before `prepare` (hidden state)."
    code = ("import sys\nfrom hanorec.data import prepare\nassert 'hanorec.synthetic' not in sys.modules\n"
            f"stats = prepare('synthetic', {str(tmp_path / 'w')!r}, min_item=1, candidates=5, options=dict(users=20, items=30))\n"
            "print(stats['users'], 'hanorec.synthetic' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "HANOREC_PROGRESS": "0"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["20", "True"]
    assert load_truth(tmp_path / "w").config["users"] == 20


def test_world_options_are_refused_for_real_sources(tmp_path):
    r = run_hanorec("data", "prepare", "movielens-small", "--out", tmp_path / "x", "--visual-signal", "0.1")
    assert r.returncode == 2 and "--visual-signal only apply to the synthetic source" in r.stderr
