"""DeepSpeed ZeRO through accelerate, where the optional deepspeed package is installed (`pip install 'hanorec[deepspeed]'`):
two CPU processes (gloo, DeepSpeed's CPU accelerator) train as one process does on the same global batch, under ZeRO-2
(`hanorec train --processes 2 distributed=deepspeed`) and ZeRO-3 (`accelerate launch --use_deepspeed --zero_stage 3`);
their checkpoints hold whole weights and optimizer state, so one process continues them without DeepSpeed, and a
one-process checkpoint continues under ZeRO on two processes. The default setup leaves deepspeed out, so there these
tests skip; run them in an environment that has it (the commands are in nbs/38_distributed.ipynb)."""
import json, os, subprocess, sys

import pytest

pytest.importorskip("deepspeed", reason="DeepSpeed is an optional extra: pip install 'hanorec[deepspeed]'")

from test_distributed import ENV, assert_same_training, cut, hanorec_stage, log, one, train, world  # noqa: F401 (fixtures)
from hanorec.distributed import free_port

ZERO3_TOL = 1e-4  # ZeRO-3 sums each gradient from the processes' partitions in another order than one process: 1e-5 of drift in 16 steps


def zero3(*settings):
    "`hanorec train SETTINGS` on two processes under ZeRO-3, started as accelerate's users start a script."
    r = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--use_deepspeed", "--zero_stage", "3", "--num_processes", "2",
                        "--num_machines", "1", "--main_process_port", str(free_port()), "--mixed_precision", "no", "--dynamo_backend", "no",
                        "-m", "hanorec.cli", "train", *map(str, settings)], capture_output=True, text=True, env={**os.environ, **ENV})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]


def environment(run) -> tuple: return tuple(json.loads((run/"metrics.json").read_text())["environment"][k] for k in ("processes", "distributed"))


@pytest.fixture(scope="module")
def zero2(world):
    "The stage under ZeRO-2 on two processes, 4 samples each per micro-batch: gradients and optimizer state partitioned between them."
    r = train("--processes", 2, *hanorec_stage(world, "zero2", "optim.batch_size=4"), "distributed=deepspeed")
    assert "training on 2 processes (DEEPSPEED)" in r.stderr and r.stdout.count("run: ") == 1
    return world/"zero2"


def test_zero2_on_two_processes_trains_as_one_process_on_the_same_global_batch(one, zero2):
    assert_same_training(one, zero2)
    steps = [x for x in log(zero2) if "split" not in x]
    assert all(x["grad_norm"] > 1.0 for x in steps[:2])  # DeepSpeed's engine clipped them (the log holds the norm before clipping)
    assert environment(zero2) == (2, "DEEPSPEED")


def test_a_zero2_checkpoint_resumes_on_one_process_without_deepspeed(world, one, zero2):
    run = cut(zero2, world/"zero2-cut", 12)
    train("--resume", f"out={run}", "distributed=auto")
    assert_same_training(one, run)
    assert environment(run) == (1, "NO")


def test_a_one_process_checkpoint_resumes_under_zero2_on_two_processes(world, one):
    "The checkpoint's whole optimizer state goes into ZeRO's partitions, before any step of the engine made its own."
    run = cut(one, world/"one-zero2", 12)
    train("--processes", 2, "--resume", f"out={run}", "distributed=deepspeed")
    assert_same_training(one, run)
    assert environment(run) == (2, "DEEPSPEED")


@pytest.fixture(scope="module")
def zero3_run(world):
    "The stage under ZeRO-3: the weights partitioned too, each layer's gathered while it runs."
    zero3(*hanorec_stage(world, "zero3", "optim.batch_size=4"))
    return world/"zero3"


def test_zero3_on_two_processes_trains_as_one_process_and_writes_a_whole_model(one, zero3_run):
    assert_same_training(one, zero3_run, tol=ZERO3_TOL)
    assert environment(zero3_run) == (2, "DEEPSPEED")
    code = f"""
import json
from hanorec.families import load_policy
p = load_policy({str(zero3_run)!r})
print(json.dumps({{"kind": type(p).__name__, "empty": [n for n, w in p.module.named_parameters() if w.numel() == 0]}}))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **ENV})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"kind": "SeqRecPolicy", "empty": []}  # no ZeRO-3 partition saved as a weight


def test_a_one_process_checkpoint_resumes_under_zero3_on_two_processes(world, one):
    run = cut(one, world/"one-zero3", 12)
    zero3("--resume", f"out={run}")
    assert_same_training(one, run, tol=ZERO3_TOL)
    assert environment(run) == (2, "DEEPSPEED")
