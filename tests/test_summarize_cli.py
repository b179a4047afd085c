"`hanorec summarize items|users` as a user runs them: caches filled once, reused, resumed after a kill -9."
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_hanorec


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    "A small synthetic world, prepared once; each test works on its own copy."
    out = tmp_path_factory.mktemp("prepared") / "syn"
    r = run_hanorec("data", "prepare", "synthetic", "--out", out, "--users", "20", "--items", "60")
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture
def data(prepared, tmp_path):
    return Path(shutil.copytree(prepared, tmp_path / "syn"))


def _records(path: Path) -> list[dict]:
    "The complete JSON lines of a cache file (a line torn by a kill is not a record)."
    out = []
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        try: out.append(json.loads(line))
        except json.JSONDecodeError: pass
    return out


def test_items_then_users_fill_the_caches_and_a_second_run_reuses_them(data):
    n_items = len(pd.read_parquet(data / "items.parquet"))
    r = run_hanorec("summarize", "items", data, env={"HANOREC_PROGRESS": "1"})
    assert r.returncode == 0, r.stderr
    assert "item summaries (vision): 100%" in r.stderr  # the progress bar, on stderr; stdout holds only the result
    assert r.stdout.strip() == f"item summaries (vision): {n_items} computed now, 0 reused from the cache; cache: {data / 'summaries' / 'items-vision'}"
    r = run_hanorec("summarize", "users", data)
    assert r.returncode == 0, r.stderr
    users_cache = data / "summaries" / "users-statistical-b3"
    n_users = len(_records(users_cache / "users.jsonl"))
    assert n_users > 0
    assert r.stdout.strip() == f"user summaries (statistical, test): {n_users} computed now, 0 reused from the cache; cache: {users_cache}"
    assert all(rec["summary"].startswith("The user appears to have a preference for") for rec in _records(users_cache / "users.jsonl"))

    again = run_hanorec("summarize", "items", data)
    assert again.returncode == 0 and f"0 computed now, {n_items} reused from the cache" in again.stdout, again.stdout + again.stderr
    again = run_hanorec("summarize", "users", data)
    assert again.returncode == 0 and f"0 computed now, {n_users} reused from the cache" in again.stdout, again.stdout + again.stderr
    assert len(_records(users_cache / "users.jsonl")) == n_users  # nothing appended

    # an ablation gets its own cache beside the first; --users N is the first N users, for a quick look
    r = run_hanorec("summarize", "users", data, "--no-recurrent", "--no-item-summaries", "--users", "2", "--show")
    assert r.returncode == 0, r.stderr
    assert "summaries/users-statistical-b3-flat-titles" in r.stdout
    assert len({rec["user_id"] for rec in _records(data / "summaries" / "users-statistical-b3-flat-titles" / "users.jsonl")}) == 2
    assert r.stdout.count("The user appears to have a preference for") == 2


def test_a_run_killed_with_sigkill_resumes_without_redoing_finished_work(data, prepared, tmp_path):
    n_items = len(pd.read_parquet(data / "items.parquet"))
    cache = data / "summaries" / "items-vision" / "items.jsonl"
    exe = Path(sys.executable).parent / "hanorec"
    proc = subprocess.Popen([str(exe), "summarize", "items", str(data), "--batch-size", "2"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "HANOREC_PROGRESS": "0"})
    try:
        deadline = time.monotonic() + 120
        while not _records(cache) and proc.poll() is None and time.monotonic() < deadline: time.sleep(0.005)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill(); proc.wait()
    before = _records(cache)
    assert 0 < len(before) < n_items

    r = run_hanorec("summarize", "items", data, "--batch-size", "2")
    assert r.returncode == 0, r.stderr
    assert f"{n_items - len(before)} computed now, {len(before)} reused from the cache" in r.stdout
    after = _records(cache)
    assert after[:len(before)] == before  # the finished records are kept as they were
    assert sorted(rec["item_id"] for rec in after) == sorted(set(rec["item_id"] for rec in after))  # none computed twice
    assert len(after) == n_items

    other = Path(shutil.copytree(prepared, tmp_path / "uninterrupted"))
    r = run_hanorec("summarize", "items", other, "--batch-size", "2")
    assert r.returncode == 0, r.stderr
    by_id = lambda recs: {rec["item_id"]: rec for rec in recs}
    assert by_id(after) == by_id(_records(other / "summaries" / "items-vision" / "items.jsonl"))


@pytest.mark.slow  # about a minute on two busy CPU cores: SmolLM2-135M-Instruct generates for real
def test_lm_backend_with_smollm2_on_a_few_users(data):
    r = run_hanorec("summarize", "users", data, "--backend", "lm", "--users", "2", "--max-new-tokens", "8", "--show")
    assert r.returncode == 0, r.stderr
    cache = data / "summaries" / "users-lm-b3" / "users.jsonl"
    recs = _records(cache)
    assert len({rec["user_id"] for rec in recs}) == 2
    assert f"{len(recs)} computed now, 0 reused from the cache" in r.stdout
    assert all(rec["summary"].startswith("The user appears to have a preference for") and
               len(rec["summary"]) > len("The user appears to have a preference for") for rec in recs)
    shown = [line for line in r.stdout.splitlines() if line.startswith("  user ")]
    assert len(shown) == 2
    assert (data / "summaries" / "items-vision" / "items.jsonl").exists()  # the item summaries it read were made on the way
    again = run_hanorec("summarize", "users", data, "--backend", "lm", "--users", "2", "--max-new-tokens", "8")
    assert f"0 computed now, {len(recs)} reused from the cache" in again.stdout, again.stdout + again.stderr


@pytest.mark.parametrize("args, expected", [
    (["items", "{tmp}/missing"], "does not exist"),
    (["users", "{tmp}"], "is not a prepared dataset"),
    (["items", "{data}", "--backend", "ocr"], "unknown item summary backend 'ocr'"),
    (["users", "{data}", "--backend", "gpt"], "unknown user summary backend 'gpt'"),
    (["items", "{data}", "--backend", "hf"], "backend 'hf' needs a model folder"),
])
def test_bad_input_exits_2_with_a_hint(data, tmp_path, args, expected):
    r = run_hanorec("summarize", *[a.format(tmp=tmp_path, data=data) for a in args])
    assert r.returncode == 2, r.stdout + r.stderr
    assert expected in r.stderr and "hint:" in r.stderr and "Traceback" not in r.stderr
