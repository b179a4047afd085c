"`hanorec models check`, as a user runs it after preparing data (`hanorec bench`: test_bench.py)."
import json

from conftest import run_hanorec


def test_models_check_scores_a_users_fixed_candidates(tmp_path):
    data = tmp_path / "ml"
    # a small catalog (items with 60+ ratings) keeps the one-off EfficientNet feature cache to seconds on a CPU
    r = run_hanorec("data", "prepare", "movielens-small", "--out", data, "--min-item", "60")
    assert r.returncode == 0, r.stderr
    r = run_hanorec("models", "check", data, "--model", "composed-tiny", "--history", "3", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert len(out["candidates"]) == 20 and len(out["scores"]) == 20 and out["images"] is True
    assert len(out["history"]) == 3  # --history N: the N most recent items in the prompt
    assert out["ranked_titles"][out["target_rank"] - 1] == out["target_title"]
    assert (data / "features").is_dir()  # image features were computed once and cached
    text = run_hanorec("models", "check", data, "--model", "composed-tiny", "--user", out["user"])
    assert text.returncode == 0, text.stderr
    assert "<- the true next item" in text.stdout and f"user {out['user']}" in text.stdout


def test_models_check_unknown_user_is_a_clear_error(tmp_path):
    r = run_hanorec("models", "check", tmp_path / "nothing", "--model", "composed-tiny")
    assert r.returncode == 2 and "hint:" in r.stderr and "Traceback" not in r.stderr
