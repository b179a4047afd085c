"`hanorec train` as a user runs it: a real SIGKILL and --resume, and the errors a user meets (several processes: test_distributed.py)."
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import ROOT, run_hanorec

HANOREC = Path(sys.executable).parent/"hanorec"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    "A small synthetic world and a sequential encoder trained on it with cross-entropy (the SFT stage)."
    d = tmp_path_factory.mktemp("train")
    r = run_hanorec("data", "prepare", "synthetic", "--out", d/"data", "--users", 80, "--items", 100)
    assert r.returncode == 0, r.stderr
    r = run_hanorec("train", f"data={d/'data'}", f"out={d/'sft'}", "model=seqrec", "optim.max_steps=20", "optim.epochs=0", "optim.batch_size=16",
                    "eval.every=10", "eval.users=20")
    assert r.returncode == 0, r.stderr
    assert "validation: auc" in r.stdout and (d/"sft"/"model"/"model.safetensors").exists()
    return d


def dpo_args(world, out, *more):
    return [f"data={world/'data'}", f"init={world/'sft'}", f"out={world/out}", "model=seqrec", "objective=dpo", "deterministic=true",
            "negatives.strategy=stochastic_topk", "negatives.pool_size=10", "negatives.refresh_every=3", "optim.batch_size=32",
            "optim.max_steps=40", "checkpoint.every=5", "eval.every=10", "eval.users=20", *more]


def test_sigkill_then_resume_ends_with_the_weights_of_an_unstopped_run(world):
    r = run_hanorec("train", *dpo_args(world, "whole"))
    assert r.returncode == 0, r.stderr
    env = {**os.environ, "HANOREC_PROGRESS": "0"}
    p = subprocess.Popen([str(HANOREC), "train", *dpo_args(world, "killed")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = world/"killed"/"checkpoints"/"latest"
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:
        if latest.exists() and latest.read_text().strip() >= "step-000010": break
        time.sleep(0.02)
    assert p.poll() is None, "the run finished before it could be killed"
    p.send_signal(signal.SIGKILL); p.wait()
    assert not (world/"killed"/"model").exists()
    assert not list((world/"killed"/"checkpoints").glob("*.tmp*"))        # no half-written checkpoint is left to be read
    again = run_hanorec("train", *dpo_args(world, "killed"))
    assert again.returncode == 2 and "--resume" in again.stderr           # a run folder is never silently overwritten
    r = run_hanorec("train", "--resume", f"out={world/'killed'}")          # the run's own config.yaml is read back
    assert r.returncode == 0, r.stderr
    a, b = load_file(world/"whole"/"model"/"model.safetensors"), load_file(world/"killed"/"model"/"model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    steps = lambda run: [(x["step"], x.get("loss"), x.get("ndcg@5")) for x in map(json.loads, (world/run/"log.jsonl").read_text().splitlines())]
    assert steps("whole") == steps("killed")


def test_errors_name_the_problem_and_the_fix(world, tmp_path):
    r = run_hanorec("train", f"data={world/'data'}", f"out={tmp_path/'x'}", "model=seqrec", "objective=dpo")
    assert r.returncode == 2 and "needs a reference" in r.stderr and "init=" in r.stderr
    r = run_hanorec("train", f"data={world/'data'}", f"out={tmp_path/'x'}", "optim.lr=fast")
    assert r.returncode == 2 and "optim.lr" in r.stderr
    r = run_hanorec("train", f"data={tmp_path/'missing'}", f"out={tmp_path/'y'}")
    assert r.returncode == 2 and "missing" in r.stderr
    r = run_hanorec("train", f"out={tmp_path/'z'}", "--resume")
    assert r.returncode == 2 and "no run to resume" in r.stderr
    cfg = tmp_path/"bad.yaml"; cfg.write_text("optim:\n  lr: [1\n")
    r = run_hanorec("train", cfg)
    assert r.returncode == 2 and "bad.yaml:" in r.stderr
    r = run_hanorec("train", f"data={world/'data'}", f"out={tmp_path/'typo'}", "optim.lrr=1e-4")
    assert r.returncode == 2 and "unknown config key 'optim.lrr'" in r.stderr and "optim.lr" in r.stderr
    r = run_hanorec("train", f"data={world/'data'}", f"out={tmp_path/'neg'}", "model=seqrec", "optim.max_steps=-5")
    assert r.returncode == 2 and "optim.max_steps=-5" in r.stderr
    assert not (tmp_path/"neg").exists()  # a refused run leaves no folder to clear before the next try


def test_ctrl_c_stops_with_the_resume_command(world):
    env = {**os.environ, "HANOREC_PROGRESS": "0"}
    endless = dpo_args(world, "interrupted", "optim.max_steps=10000000")  # still training when the signal comes
    # a shell's background job ignores SIGINT, and its children inherit that: give this one the terminal's default back
    p = subprocess.Popen([str(HANOREC), "train", *endless], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        log, deadline = world/"interrupted"/"log.jsonl", time.time() + 300
        while time.time() < deadline and p.poll() is None and not log.exists(): time.sleep(0.2)
        p.send_signal(signal.SIGINT)
        err = p.communicate(timeout=120)[1]
    finally:
        if p.poll() is None: p.kill()  # it must not outlive a failed test (it was told to run for ever)
    assert p.returncode == 130, err
    assert "interrupted" in err and f"hanorec train --resume out={world/'interrupted'}" in err


@pytest.mark.slow
def test_a_hugging_face_mllm_from_a_local_folder_trains_sft_then_hanorec(tmp_path):
    "A user's own Qwen2-VL checkpoint (here a tiny random one of the real architecture, with its real processor and images)."
    from hanorec.models import build_tiny_checkpoint
    r = run_hanorec("data", "prepare", "synthetic", "--out", tmp_path/"data", "--users", 30, "--items", 50)
    assert r.returncode == 0, r.stderr
    ckpt = build_tiny_checkpoint("qwen2_vl", tmp_path/"qwen2-vl")
    common = [f"data={tmp_path/'data'}", f"model={ckpt}", "optim.batch_size=4", "eval.users=4", "prompt_candidates=5", "history=3", "eval.every=0"]
    r = run_hanorec("train", *common, f"out={tmp_path/'sft'}", "optim.max_steps=2")
    assert r.returncode == 0, r.stderr
    r = run_hanorec("train", *common, f"out={tmp_path/'han'}", f"init={tmp_path/'sft'}", "objective=hanorec", "nodo.sigma=0.1", "optim.max_steps=2")
    assert r.returncode == 0, r.stderr
    log = [json.loads(l) for l in (tmp_path/"han"/"log.jsonl").read_text().splitlines()]
    steps = [x for x in log if "split" not in x]
    assert [x["step"] for x in steps] == [1, 2]
    # HaNoRec's beta is beta0 * R * h, with h within a few percent of 1 on this data
    assert all(abs(x["beta_mean"] / (0.1 * x["responsiveness"]) - 1) < 0.05 for x in steps), steps
    info = json.loads((tmp_path/"han"/"model"/"hanorec_adapter.json").read_text())
    assert info["family"] == "qwen2_vl" and info["merged"] == [str((tmp_path/"sft"/"model").resolve())]
    metrics = json.loads((tmp_path/"han"/"metrics.json").read_text())
    assert metrics["validation"]["users"] == 4 and metrics["test"]["users"] == 4


def test_print_config_shows_every_setting_with_the_overrides():
    r = run_hanorec("train", "--print-config", "objective=hanorec", "nodo.sigma=0.1")
    assert r.returncode == 0, r.stderr
    assert "objective: hanorec" in r.stdout and "  sigma: 0.1" in r.stdout
    assert all(f"\n{section}:" in r.stdout for section in ("negatives", "optim", "eval", "lora", "hars", "nodo", "checkpoint", "seqrec", "summary"))


def test_load_policy_scores_a_finished_run_as_its_metrics_say_without_the_trainer(world):
    "What evaluation and the demo do: a fresh process loads the SFT run and re-scores its test users; the trainer is never imported."
    code = f"""
import json, sys
import numpy as np, torch
from hanorec.core import Purpose, sample_rng
from hanorec.data import load_samples
from hanorec.metrics import evaluate_scores
from hanorec.families import load_policy
policy = load_policy({str(world/'sft')!r})
test = load_samples(policy.ds, "test", 10, 0)
users = np.sort(sample_rng(0, Purpose.EVAL_USERS).choice(len(load_samples(policy.ds, "validation", 10, 0)), 20, replace=False))
with torch.no_grad(): m = evaluate_scores(policy.eval_scores(test, users), test.target_index[users])
print(json.dumps({{"metrics": m, "train_imported": "hanorec.train" in sys.modules}}))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "HANOREC_PROGRESS": "0"})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["train_imported"] is False
    stored = json.loads((world/"sft"/"metrics.json").read_text())["test"]
    assert out["metrics"].keys() == stored.keys()
    assert all(abs(out["metrics"][k] - stored[k]) < 1e-6 for k in stored), (out["metrics"], stored)


def test_the_encoders_recipe_is_a_default_the_user_can_override():
    r = run_hanorec("train", "--print-config", "model=seqrec")
    assert r.returncode == 0, r.stderr
    assert "every_position: true" in r.stdout and "  epochs: 20.0" in r.stdout and "  batch_size: 128" in r.stdout
    r = run_hanorec("train", "--print-config", "model=seqrec", "optim.epochs=2", "every_position=false")
    assert "every_position: false" in r.stdout and "  epochs: 2.0" in r.stdout and "  batch_size: 128" in r.stdout
    r = run_hanorec("train", "--print-config", "model=composed-tiny")
    assert "every_position: false" in r.stdout and "  epochs: 0.0" in r.stdout


def test_a_preference_stage_that_never_beats_its_start_says_so(world):
    "With a learning rate of 0 nothing can improve on the SFT start: the run says its model is the start's."
    r = run_hanorec("train", f"data={world/'data'}", f"init={world/'sft'}", f"out={world/'flat'}", "objective=dpo", "optim.lr=0",
                    "optim.max_steps=4", "eval.every=2", "eval.users=20")
    assert r.returncode == 0, r.stderr
    assert "note: validation never improved on the starting model" in r.stdout
    m = json.loads((world/"flat"/"metrics.json").read_text())
    assert m["best_step"] == 0 and "never improved" in m["note"] and m["final"]["step"] == 4


def test_an_encoder_reading_user_summaries_trains_continues_and_evaluates(world, tmp_path):
    "MLLM-MSR's summaries as the encoder's fourth input, from the command line: SFT, a DPO stage on it, evaluation; and the errors."
    common = [f"data={world/'data'}", "model=seqrec", "optim.max_steps=20", "optim.epochs=0", "optim.batch_size=16", "eval.every=10", "eval.users=20"]
    r = run_hanorec("train", *common, f"out={tmp_path/'sft'}", "seqrec.summaries=true", "summary.backend=statistical", "summary.block_size=2")
    assert r.returncode == 0, r.stderr
    saved = load_file(tmp_path/"sft"/"model"/"model.safetensors")
    assert saved["summary_proj.1.weight"].abs().sum() > 0  # the projection started at zero and learnt
    assert (world/"data"/"summaries"/"users-statistical-b2"/"minilm"/"vectors.npz").exists()  # the summaries' vectors, cached
    r = run_hanorec("train", f"data={world/'data'}", f"init={tmp_path/'sft'}", f"out={tmp_path/'dpo'}", "model=seqrec", "objective=dpo",
                    "optim.max_steps=4", "optim.batch_size=16", "eval.every=0", "eval.users=10")  # names no summaries: reads its start's
    assert r.returncode == 0, r.stderr
    r = run_hanorec("evaluate", tmp_path/"dpo", "--split", "test")
    assert r.returncode == 0, r.stderr
    assert "ndcg@5" in r.stdout.lower()
    r = run_hanorec("train", *common, f"out={tmp_path/'none'}", "seqrec.summaries=true")
    assert r.returncode == 2 and "summary.backend is none" in r.stderr and "summary.backend=statistical" in r.stderr
    r = run_hanorec("train", *common, f"out={tmp_path/'lm'}", "seqrec.summaries=true", "summary.backend=lm")
    assert r.returncode == 2 and "no 'lm' user summaries" in r.stderr and "hanorec summarize users" in r.stderr
