"""Several processes through accelerate, as a user starts them (`hanorec train --processes 2`): two CPU processes (gloo)
train as one process does on the same global batch, under DDP and under FSDP2; a two-process run killed with SIGKILL
resumes on two processes and on one; the FSDP run's model is whole, and `load_policy` reads it."""
import importlib.util, json, os, shutil, signal, subprocess, sys, time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from safetensors.torch import load_file

from conftest import PROBE_ENV, refused, run_hanorec
from hanorec.distributed import free_port

HANOREC = Path(sys.executable).parent/"hanorec"
ENV = {**PROBE_ENV, "TORCH_CPP_LOG_LEVEL": "ERROR"}  # one torch thread per process


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    "A small synthetic world, and an encoder trained on it with cross-entropy: the start (and reference) of the preference stages."
    d = tmp_path_factory.mktemp("distributed")
    r = run_hanorec("data", "prepare", "synthetic", "--out", d/"data", "--users", 40, "--items", 50, env=ENV)
    assert r.returncode == 0, r.stderr
    r = run_hanorec("train", f"data={d/'data'}", f"out={d/'sft'}", "model=seqrec", "optim.max_steps=10", "optim.epochs=0",
                    "optim.batch_size=16", "eval.every=0", "eval.users=10", env=ENV)
    assert r.returncode == 0, r.stderr
    return d


def hanorec_stage(world, out, *more):
    "HaNoRec on RoDPO's dynamic pools (refreshed every other step), two micro-batches a step, clipped: every per-sample part at once."
    return [f"data={world/'data'}", f"init={world/'sft'}", f"out={world/out}", "model=seqrec", "objective=hanorec",
            "negatives.strategy=stochastic_topk", "negatives.pool_size=8", "negatives.refresh_every=2", "optim.grad_accum=2",
            "optim.max_steps=16", "optim.warmup_steps=0", "optim.lr=1e-3", "optim.max_grad_norm=1.0", "eval.every=8", "eval.users=10",
            "checkpoint.every=4", "deterministic=true", *more]


def train(*args):
    r = run_hanorec("train", *map(str, args), env=ENV)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r


def log(run:Path) -> list[dict]: return [json.loads(line) for line in (run/"log.jsonl").read_text().splitlines()]


def assert_same_training(a:Path, b:Path, tol:float=1e-5, weights_tol:float|None=None):
    """The same log (every step's numbers and every validation, to float tolerance), the same final weights (to `weights_tol`,
    default `tol`), the same pairs."""
    la, lb = log(a), log(b)
    assert [(x["step"], x.get("split")) for x in la] == [(x["step"], x.get("split")) for x in lb]
    for x, y in zip(la, lb):
        assert x.keys() == y.keys(), (x.keys() ^ y.keys())
        for k, v in x.items():
            if k in ("seconds", "samples_per_second", "reference_computed"): continue
            assert v == (y[k] if isinstance(v, str) else pytest.approx(y[k], rel=tol, abs=tol)), (x["step"], k, v, y[k])
    files = sorted(p.name for p in (a/"model").glob("*.safetensors"))
    assert files and files == sorted(p.name for p in (b/"model").glob("*.safetensors"))
    for f in files:  # an encoder's model.safetensors; a language model's adapter and projector
        wa, wb = load_file(a/"model"/f), load_file(b/"model"/f)
        assert wa.keys() == wb.keys() and max(float((wa[k] - wb[k]).abs().max()) for k in wa) < (weights_tol or tol), f
    if (a/"pairs").exists():
        pa, pb = pd.read_parquet(a/"pairs"), pd.read_parquet(b/"pairs")
        cols = ["step", "sample", "user", "positive", "negative"]
        pd.testing.assert_frame_equal(pa[cols], pb[cols])  # every pair trained on, once, in the order one process trains them
        assert (pa.beta - pb.beta).abs().max() < tol and (pa.hardness - pb.hardness).abs().max() < tol


@pytest.fixture(scope="module")
def one(world):
    "The stage on one process, micro-batches of 8."
    train(*hanorec_stage(world, "one", "optim.batch_size=8"))
    return world/"one"


@pytest.fixture(scope="module")
def two(world):
    "The same global batch on two processes, 4 samples each per micro-batch (DDP)."
    r = train("--processes", 2, *hanorec_stage(world, "two", "optim.batch_size=4"))
    assert "training on 2 processes (DDP)" in r.stderr and r.stdout.count("run: ") == 1  # one process tells the story
    return world/"two"


def test_ddp_on_two_processes_trains_as_one_process_on_the_same_global_batch(one, two):
    assert_same_training(one, two)
    steps = [x for x in log(two) if "split" not in x]
    assert len({x["responsiveness"] for x in steps}) > 1 and all(x["grad_norm"] > 1.0 for x in steps[:2])  # HaRS at work; clipping too
    assert [x["reference_computed"] for x in steps] == [x["reference_computed"] for x in log(one) if "split" not in x]  # no answer twice
    m = json.loads((two/"metrics.json").read_text())
    assert (m["environment"]["processes"], m["environment"]["distributed"], m["trained"]["samples_per_step"]) == (2, "MULTI_CPU", 16)


def test_an_encoders_sft_on_every_position_weighs_each_process_by_its_rows(world):
    "SASRec's SFT scores every position of each window: processes score different numbers of rows, and the loss stays the global mean."
    common = [f"data={world/'data'}", "model=seqrec", "seqrec.dropout=0", "optim.max_steps=6", "optim.epochs=0", "optim.lr=1e-3",
              "eval.every=3", "eval.users=10", "sample_stride=3", "deterministic=true"]
    train(*common, f"out={world/'sft-one'}", "optim.batch_size=8")
    train("--processes", 2, *common, f"out={world/'sft-two'}", "optim.batch_size=4")
    assert_same_training(world/"sft-one", world/"sft-two")


FSDP_CONFIG = """compute_environment: LOCAL_MACHINE
distributed_type: FSDP
num_machines: 1
num_processes: 2
mixed_precision: 'no'
fsdp_config:
  fsdp_version: 2
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_reshard_after_forward: true
  fsdp_activation_checkpointing: true
  fsdp_cpu_ram_efficient_loading: false
"""


@pytest.fixture(scope="module")
def fsdp(world):
    """The stage under FSDP2 on two processes, started as accelerate's users start a script (an FSDP config file, the
    trainer's notebook's): every encoder layer's parameters, gradients and optimizer state sharded between them, each
    layer recomputed in the backward pass (activation checkpointing)."""
    (world/"fsdp.yaml").write_text(FSDP_CONFIG)
    r = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(world/"fsdp.yaml"), "--main_process_port",
                        str(free_port()), "-m", "hanorec.cli", "train", *hanorec_stage(world, "fsdp", "optim.batch_size=4")],
                       capture_output=True, text=True, env={**os.environ, **ENV})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return world/"fsdp"


# FSDP reduce-scatters each gradient in another order than one process sums it, and AdamW's normalised step turns a last-bit
# difference in a near-zero gradient entry into a weight difference near 1e-5 after 16 steps at lr 1e-3 (1.02e-5 on an AMD
# EPYC, under 1e-5 on the machine the test was written on): the weights to 1e-4 (a step moves a weight by up to 1e-3), the log to 1e-5
FSDP_WEIGHTS = 1e-4


def test_fsdp_on_two_processes_trains_as_one_process_and_writes_a_whole_model(one, fsdp):
    assert_same_training(one, fsdp, weights_tol=FSDP_WEIGHTS)
    assert json.loads((fsdp/"metrics.json").read_text())["environment"]["distributed"] == "FSDP"
    code = f"""
import json, torch
from hanorec.families import load_policy
p = load_policy({str(fsdp)!r})
print(json.dumps({{"kind": type(p).__name__, "sharded": any(type(w).__name__ == "DTensor" for w in p.module.parameters())}}))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **ENV})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"kind": "SeqRecPolicy", "sharded": False}


@pytest.mark.slow
def test_a_language_models_lora_under_fsdp_trains_as_one_process(world):
    """A tiny composed MLLM (a Llama decoder reading image features through a projector, a LoRA by peft) sharded layer by
    layer: every process draws a fresh LoRA of its own, and all start from the main process's, as one process would."""
    common = [f"data={world/'data'}", "model=composed-tiny", "optim.max_steps=4", "optim.warmup_steps=0", "optim.lr=1e-3", "eval.every=2",
              "eval.users=8", "eval.batch_size=8", "checkpoint.every=2", "prompt_candidates=5", "history=4", "lora.dropout=0", "deterministic=true"]
    train(*common, f"out={world/'lm-one'}", "optim.batch_size=4")
    train("--processes", 2, *common, f"out={world/'lm-fsdp'}", "optim.batch_size=2", "distributed=fsdp")
    assert_same_training(world/"lm-one", world/"lm-fsdp", tol=1e-4)
    assert json.loads((world/"lm-fsdp"/"metrics.json").read_text())["environment"]["distributed"] == "FSDP"


def cut(run:Path, into:Path, step:int) -> Path:
    "A copy of a run as it stood after its checkpoint `step`: later checkpoints, the final model and metrics not written yet."
    shutil.copytree(run, into)
    for ck in (into/"checkpoints").glob("step-*"):
        if int(ck.name[5:]) > step: shutil.rmtree(ck)
    (into/"checkpoints"/"latest").write_text(f"step-{step:06d}")
    for p in ("model", "metrics.json", "plots"): shutil.rmtree(into/p) if (into/p).is_dir() else (into/p).unlink()
    return into


def test_an_fsdp_checkpoint_resumes_on_one_process_without_fsdp(world, one, fsdp):
    "The checkpoint holds whole weights and optimizer state (gathered from the shards): one process continues it."
    run = cut(fsdp, world/"fsdp-cut", 12)  # checkpoint.keep=2: steps 12 and 16 are kept
    train("--resume", f"out={run}")  # distributed=auto: FSDP under the launcher's FSDP configuration, one process without one
    assert_same_training(one, run, weights_tol=FSDP_WEIGHTS)


def dead(procs, wait:float=60) -> bool:
    "Whether every process has ended (a zombie has: only its exit status is left for a parent that may be gone too)."
    def ended(p):
        try: return p.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess: return True
    deadline = time.time() + wait
    while not all(map(ended, procs)) and time.time() < deadline: time.sleep(0.05)
    return all(map(ended, procs))


@pytest.fixture(scope="module")
def killed(world, two):
    "The two-process stage killed with SIGKILL after its step-4 checkpoint: the command, accelerate's launcher and both processes at once."
    out = world/"killed"
    p = subprocess.Popen([str(HANOREC), "train", "--processes", "2", *hanorec_stage(world, "killed", "optim.batch_size=4")],
                         env={**os.environ, **ENV}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    latest, deadline = out/"checkpoints"/"latest", time.time() + 300
    while time.time() < deadline and p.poll() is None:
        if latest.exists() and latest.read_text().strip() >= "step-000004": break
        time.sleep(0.01)
    assert p.poll() is None, "the run finished before it could be killed"
    every = [psutil.Process(p.pid), *psutil.Process(p.pid).children(recursive=True)]  # torchrun starts each in a session of its own
    for proc in every: proc.send_signal(signal.SIGKILL)
    p.wait()
    assert len(every) >= 4 and dead(every)  # hanorec, accelerate's launcher and the two processes
    assert not (out/"model").exists() and not (out/"metrics.json").exists()
    return out


def test_a_killed_two_process_run_resumes_on_two_processes_under_fsdp_too(world, two, killed):
    "Its checkpoint, written under DDP, is scattered into FSDP's shards: a resume may change how the processes share the model."
    run = world/"killed-2"
    shutil.copytree(killed, run)
    train("--processes", 2, "--resume", f"out={run}", "distributed=fsdp")
    assert_same_training(two, run, weights_tol=FSDP_WEIGHTS)
    assert json.loads((run/"metrics.json").read_text())["environment"]["distributed"] == "FSDP"


def test_a_two_process_run_resumes_on_one_process_with_its_global_batch(world, two, killed):
    "Micro-batches of 4 samples on each of 2 processes continue as micro-batches of 8 on one: the same data, schedule and weights."
    run = world/"killed-1"
    shutil.copytree(killed, run)
    train("--resume", f"out={run}")
    assert_same_training(two, run)
    assert json.loads((run/"metrics.json").read_text())["trained"]["samples_per_step"] == 16


def test_what_cannot_run_is_refused_before_any_process_starts(capsys, world, tmp_path):
    common = [f"data={world/'data'}", f"init={world/'sft'}", "model=seqrec", "objective=dpo"]
    if importlib.util.find_spec("deepspeed") is None:  # an optional extra (tests/test_deepspeed.py trains with it where it is installed)
        refused(capsys, ["train", "--processes", "2", *common, f"out={tmp_path/'ds'}", "distributed=deepspeed"], "pip install deepspeed", "distributed=fsdp")
    else: refused(capsys, ["train", *common, f"out={tmp_path/'ds'}", "distributed=deepspeed"], "needs its processes started by a launcher")
    refused(capsys, ["train", "--processes", "0", *common, f"out={tmp_path/'none'}"], "--processes 0")
    refused(capsys, ["train", *common, f"out={tmp_path/'fsdp'}", "distributed=fsdp"], "needs its processes started by a launcher")
    assert not list(tmp_path.iterdir())  # nothing was written
