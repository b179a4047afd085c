"The language model's one-forward tasks as a user runs them: item tokens from an encoder run, SFT with a scoring head or by label, a preference stage on top, a kill and --resume, evaluation with its protocols, and the refusals."
import json, os, signal, subprocess, sys, time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import run_hanorec

HANOREC = Path(sys.executable).parent/"hanorec"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    "A small synthetic world and a SASRec over item ids trained on it: the source of the collaborative item tokens."
    d = tmp_path_factory.mktemp("lm")
    r = run_hanorec("data", "prepare", "synthetic", "--out", d/"data", "--users", 60, "--items", 80)
    assert r.returncode == 0, r.stderr
    r = run_hanorec("train", f"data={d/'data'}", f"out={d/'sasrec'}", "model=seqrec", "seqrec.text=false", "optim.epochs=0",
                    "optim.max_steps=15", "optim.batch_size=16", "eval.every=0", "eval.users=10", "eval.test=false")
    assert r.returncode == 0, r.stderr
    return d


def lm(world, out, *more):
    return [f"data={world/'data'}", f"out={world/out}", "model=composed-tiny", f"item_tokens={world/'sasrec'}", "images=false",
            "optim.max_steps=6", "optim.batch_size=4", "eval.every=3", "eval.users=8", "eval.test=false", "checkpoint.every=2", *more]


def test_a_scoring_head_over_item_tokens_trains_is_evaluated_on_both_protocols_and_continues_with_dpo(world):
    r = run_hanorec("train", *lm(world, "head", "task=head", "items=token"))
    assert r.returncode == 0, r.stderr
    run = world/"head"
    saved = load_file(run/"model"/"item_tokens.safetensors")
    assert {"table", "projector.0.weight", "head.weight"} <= set(saved)                   # the table travels with the run
    assert json.loads((run/"model"/"item_ids.json").read_text())[:1]
    for protocol in ("sampled", "full"):                                                     # a head ranks the whole catalog too
        e = run_hanorec("evaluate", run, "--protocol", protocol, "--users", 10)
        assert e.returncode == 0, e.stderr
        m = json.loads((run/"eval"/f"test-{protocol}"/"metrics.json").read_text())
        key = "ndcg@5" if protocol == "sampled" else "ndcg@5/excluded"
        assert m["task"] == "head" and m["users"] == 10 and 0 <= m["metrics"][key]["value"] <= 1
    d = run_hanorec("train", f"data={world/'data'}", f"init={run}", f"out={world/'head-dpo'}", "objective=dpo", "optim.max_steps=3",
                    "optim.batch_size=4", "eval.every=0", "eval.users=8", "eval.test=false")
    assert d.returncode == 0, d.stderr
    cfg = (world/"head-dpo"/"config.yaml").read_text()
    assert "task: head" in cfg and "items: token" in cfg                                     # the continuing stage keeps what its start reads
    log = [json.loads(x) for x in (world/"head-dpo"/"log.jsonl").read_text().splitlines()]
    assert any("reward_margin" in x for x in log)


def test_label_scoring_records_its_position_bias_and_resumes_exactly_after_a_kill(world):
    args = lm(world, "label-whole", "task=label", "items=hybrid", "prompt_candidates=6", "deterministic=true")
    r = run_hanorec("train", *args)
    assert r.returncode == 0, r.stderr
    killed = [a.replace("label-whole", "label-killed") for a in args]
    p = subprocess.Popen([str(HANOREC), "train", *killed], env={**os.environ, "HANOREC_PROGRESS": "0"},
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest, deadline = world/"label-killed"/"checkpoints"/"latest", time.time() + 300
    while time.time() < deadline and p.poll() is None:
        if latest.exists() and latest.read_text().strip() >= "step-000002": break
        time.sleep(0.02)
    assert p.poll() is None, "the run finished before it could be killed"
    p.send_signal(signal.SIGKILL); p.wait()
    r = run_hanorec("train", "--resume", f"out={world/'label-killed'}")
    assert r.returncode == 0, r.stderr
    a, b = load_file(world/"label-whole"/"model"/"adapter_model.safetensors"), load_file(world/"label-killed"/"model"/"adapter_model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    e = run_hanorec("evaluate", world/"label-whole", "--users", 12)
    assert e.returncode == 0, e.stderr
    m = json.loads((world/"label-whole"/"eval"/"test-sampled"/"metrics.json").read_text())
    bias = m["position_bias"]
    assert sum(bias["users by target label"].values()) == 12 and set(bias["hr@1 by target label"]) <= set("ABCDEFGHIJKLMNOPQRST")


def test_the_language_models_settings_are_refused_before_any_work(world, tmp_path):
    cases = [(["task=head"], "no item_tokens= run gives them"),
             (["task=head", f"item_tokens={world/'data'}"], "prepared dataset"),
             (["task=label", "prompt_candidates=30"], "prompt_candidates=30 lists more"),
             (["items=token", "curriculum=true", "items=text"], "items=text has none"),
             (["task=head", f"item_tokens={world/'sasrec'}", "title_tokens=-1"], "title_tokens=-1")]
    for extra, said in cases:
        r = run_hanorec("train", f"data={world/'data'}", f"out={tmp_path/'x'}", "model=composed-tiny", *extra)
        assert r.returncode != 0 and said in r.stderr, (extra, r.stderr)
        assert not (tmp_path/"x").exists()                                                   # nothing written
