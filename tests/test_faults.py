"Training under faults: a SIGKILL anywhere, a damaged checkpoint, a diverging loss, a full disk, a setting that is not a number."
import dataclasses, errno, json, logging, os, random, shutil, signal, time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import hanorec.checkpoints as C
import hanorec.train as T
from hanorec.settings import TrainConfig, train_config
from hanorec.core import HanorecError, load_config, save_config
from hanorec.synthetic import prepare_synthetic
from conftest import run_hanorec

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    "A tiny synthetic world, and a sequential encoder trained on it without a stop (in this process): what every fault must end in."
    d = tmp_path_factory.mktemp("faults")
    prepare_synthetic(d/"data", users=40, items=60, seed=0, with_images=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same sums in every run, and a fork (below) with no thread pool to inherit
    T.train(config(d, "whole"))
    yield d
    torch.set_num_threads(threads)


def args(world, out, *more):
    return [f"data={world/'data'}", f"out={world/out}", "model=seqrec", "optim.epochs=0", "optim.max_steps=12", "optim.batch_size=16",
            "eval.every=4", "eval.users=10", "eval.test=false", "checkpoint.every=4", "checkpoint.keep=3", "deterministic=true", *more]


def config(world, out, *more): return train_config(None, args(world, out, *more))


def same_weights(a:Path, b:Path) -> bool:
    x, y = load_file(a/"model"/"model.safetensors"), load_file(b/"model"/"model.safetensors")
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def steps(run:Path) -> list:
    return [(r["step"], r.get("loss"), r.get("ndcg@5")) for r in map(json.loads, (run/"log.jsonl").read_text().splitlines())]


@pytest.fixture
def warnings():
    "The warnings hanorec logs while the test runs."
    got = []
    handler = logging.Handler(logging.WARNING); handler.emit = lambda r: got.append(r.getMessage())
    logging.getLogger("hanorec").addHandler(handler)
    yield got
    logging.getLogger("hanorec").removeHandler(handler)


def killed(world, out:str, where:str, at:str) -> int:
    "Train in a forked child and SIGKILL it (a real kill of a real process) at the chosen point; its wait status."
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            die = lambda: os.kill(os.getpid(), signal.SIGKILL)
            if where == "step":  # as optimizer step `at` (counted from 0) begins
                step = T.Trainer._step
                T.Trainer._step = lambda self, s: die() if s == int(at) else step(self, s)
            elif where == "checkpoint write":  # halfway through the first file of checkpoint `at`
                write = C._write_bytes
                def half(path, data):
                    if path.parent.name.startswith(f".{at}."): write(path, data[:len(data) // 2]); die()
                    write(path, data)
                C._write_bytes = half
            elif where == "before latest":  # checkpoint `at` is in place, checkpoints/latest still names the one before
                text = C.atomic_write_text
                C.atomic_write_text = lambda path, t: die() if path.name == "latest" and t == at else text(path, t)
            T.train(config(world, out)); code = 0
        finally: os._exit(code)
    if where == "random": time.sleep(random.uniform(0.0, 1.5)); os.kill(pid, signal.SIGKILL)  # anywhere from start to end
    return os.waitpid(pid, 0)[1]


@pytest.mark.parametrize("where,at", [("step", "0"), ("step", "2"), ("checkpoint write", "step-000008"),
                                      ("before latest", "step-000008"), ("random", "")])
def test_a_sigkill_anywhere_then_resume_ends_as_a_run_never_stopped(world, warnings, where, at):
    out = world/f"killed-{where.replace(' ', '-')}-{at}"
    status = killed(world, out.name, where, at)
    if where != "random":
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL and not (out/"model").exists()
    if where == "checkpoint write": assert list((out/"checkpoints").glob(".step-000008.*.tmp"))  # the torso a kill leaves
    if (out/"config.yaml").exists(): resume(world, out)
    else: T.train(config(world, out.name))                          # killed before it wrote anything: started anew
    assert same_weights(world/"whole", out)
    assert steps(world/"whole") == steps(out)                      # each step logged once, as the unstopped run logged it
    assert not [p.name for p in (out/"checkpoints").iterdir() if p.name.startswith(".")]  # no temporary left for ever
    if where == "checkpoint write": assert any("cleared .step-000008" in w for w in warnings)


@pytest.fixture
def stopped(world, tmp_path):
    "The unstopped run as it stood before its end: every checkpoint written, model/ and metrics.json not yet."
    run = tmp_path/"stopped"
    shutil.copytree(world/"whole", run)
    shutil.rmtree(run/"model"); (run/"metrics.json").unlink()
    save_config(dataclasses.replace(load_config(TrainConfig, run/"config.yaml"), out=str(run)), run/"config.yaml")  # its own folder
    return run


def resume(world, run, *more):
    return T.train(dataclasses.replace(config(world, "x", *more), out=str(run)), resume=True)


@pytest.mark.parametrize("damage", ["trainable.safetensors", "best.safetensors", "optimizer.pt", "rng.pt", "rng.json", "negatives.npz",
                                    "state.json", "manifest.json", "missing step folder"])
def test_a_damaged_checkpoint_falls_back_to_the_intact_one_before_it(world, stopped, warnings, damage):
    newest = stopped/"checkpoints"/"step-000012"
    if damage == "missing step folder": shutil.rmtree(newest)
    else:
        f = newest/damage; f.write_bytes(f.read_bytes()[:f.stat().st_size // 2])  # truncated, as a full disk or a kill leaves it
    resume(world, stopped)
    assert same_weights(world/"whole", stopped) and steps(world/"whole") == steps(stopped)
    said = "\n".join(warnings)
    assert ("step-000012 is damaged" in said and damage in said) if damage != "missing step folder" else "missing folder step-000012" in said
    assert not C.checkpoint_damage(newest)                         # written again, whole, by the resumed run


def test_an_empty_latest_is_no_obstacle(world, stopped, warnings):
    (stopped/"checkpoints"/"latest").write_text("")
    resume(world, stopped)
    assert same_weights(world/"whole", stopped) and any("latest is empty" in w for w in warnings)


def test_with_no_intact_checkpoint_the_run_starts_again_from_step_0(world, stopped, warnings):
    for ck in (stopped/"checkpoints").glob("step-*"): (ck/"trainable.safetensors").write_bytes(b"")
    resume(world, stopped)
    assert same_weights(world/"whole", stopped) and steps(world/"whole") == steps(stopped)
    assert any("no intact checkpoint" in w for w in warnings)


def test_resuming_a_finished_run_says_so_and_leaves_it_alone(world, warnings):
    before = {p.name: p.stat().st_mtime_ns for p in (world/"whole").rglob("*") if p.is_file()}
    m = resume(world, world/"whole")
    assert m == json.loads((world/"whole"/"metrics.json").read_text())
    assert any("finished already" in w for w in warnings)
    assert before == {p.name: p.stat().st_mtime_ns for p in (world/"whole").rglob("*") if p.is_file()}


def test_a_diverging_run_stops_at_the_step_and_keeps_the_last_good_checkpoint(world):
    huge = ("optim.lr=1e5", "optim.max_grad_norm=0")  # the loss is NaN from step 8 on this world
    with pytest.raises(HanorecError) as e: T.train(config(world, "diverged", *huge))
    msg = str(e.value)
    assert "diverged at step 8" in msg and "users u" in msg and "step-000004, is intact" in msg and "skip_nonfinite" in msg
    ckpts = world/"diverged"/"checkpoints"
    assert [p.name for p in C.list_checkpoints(ckpts)] == ["step-000004"] and not C.checkpoint_damage(ckpts/"step-000004")
    assert all(torch.isfinite(v).all() for v in load_file(ckpts/"step-000004"/"trainable.safetensors").values())
    m = resume(world, world/"diverged", *huge, "optim.skip_nonfinite=true")  # what the hint says: skip such steps and go on
    log = [json.loads(l) for l in (world/"diverged"/"log.jsonl").read_text().splitlines()]
    trained = [r for r in log if "split" not in r]
    assert m["steps"] == 12 and m["skipped_steps"] >= 1 and trained[-1]["skipped"] == m["skipped_steps"]
    assert [r["step"] for r in trained] == list(range(1, 13))
    assert all(torch.isfinite(v).all() for v in load_file(world/"diverged"/"model"/"model.safetensors").values())


def test_a_full_disk_stops_with_the_space_needed_and_leaves_the_previous_checkpoint(world, monkeypatch):
    real = open
    class Full:  # the device fills after 1000 bytes of checkpoint step-000008
        def __init__(self, f): self.f, self.written = f, 0
        def write(self, b):
            if self.written + len(b) > 1000:
                self.f.write(b[:1000 - self.written]); raise OSError(errno.ENOSPC, "No space left on device")
            self.written += len(b); return self.f.write(b)
        def __getattr__(self, name): return getattr(self.f, name)
        def __enter__(self): return self
        def __exit__(self, *exc): self.f.close()
    monkeypatch.setattr(C, "open", lambda p, mode="r", *a, **k: Full(real(p, mode, *a, **k)) if "step-000008" in str(p) else real(p, mode, *a, **k),
                        raising=False)
    with pytest.raises(HanorecError) as e: T.train(config(world, "full"))
    ckpts = world/"full"/"checkpoints"
    assert f"no space left on the device of {ckpts} for checkpoint step-000008: it needs about" in str(e.value) and "--resume" in str(e.value)
    assert sorted(p.name for p in ckpts.iterdir()) == ["latest", "step-000004"]
    assert (ckpts/"latest").read_text() == "step-000004" and not C.checkpoint_damage(ckpts/"step-000004")
    monkeypatch.undo()
    resume(world, world/"full")                                    # space freed: it continues to the unstopped run's end
    assert same_weights(world/"whole", world/"full")


@pytest.mark.parametrize("setting", ["optim.lr=.nan", "optim.max_grad_norm=.nan", "beta=.nan", "hars.beta0=inf", "nodo.sigma=-.inf",
                                     "optim.weight_decay=nan"])
def test_a_setting_that_is_not_a_finite_number_is_refused_up_front(world, setting):
    key = setting.split("=")[0]
    with pytest.raises(HanorecError, match=f"config key '{key}' is .*finite"): config(world, "nan", setting)
    cfg = config(world, "nan")
    section, _, leaf = key.rpartition(".")
    bad = dataclasses.replace(getattr(cfg, section), **{leaf: float("nan")}) if section else float("nan")
    with pytest.raises(HanorecError, match=key): T.Trainer(dataclasses.replace(cfg, **{section or leaf: bad}))  # a config built in Python
    assert not (world/"nan").exists()                             # refused before anything is written


def test_the_command_refuses_a_nan_learning_rate_before_writing_anything(world):
    r = run_hanorec("train", *args(world, "nan-cli", "optim.lr=.nan"))
    assert r.returncode == 2 and "'optim.lr' is nan" in r.stderr and "Traceback" not in r.stderr
    assert not (world/"nan-cli").exists()


def test_a_truncated_neighbour_cache_is_rebuilt_with_a_warning(world, warnings):
    from hanorec.data import load_prepared
    from hanorec.objectives import neighbour_scores
    ds = load_prepared(world/"data")
    first = neighbour_scores(ds, 5, False)
    (cache,) = (world/"data"/"features").glob("hars-k5*")
    f = cache/"neighbours.npy"; f.write_bytes(f.read_bytes()[:100])
    assert torch.equal(neighbour_scores(ds, 5, False), first)
    assert any(f"{cache} is damaged (neighbours.npy" in w for w in warnings)


def test_a_truncated_reference_store_is_recomputed_with_a_warning(tmp_path, warnings):
    import numpy as np
    from hanorec.core import Manifest
    from hanorec.policies import ReferenceStore
    m, keys = Manifest("reference-logp", inputs={"reference": "abc"}), np.array([[1, 2], [3, 4]])
    store = ReferenceStore(tmp_path/"reference", m)
    values = store.get(keys, lambda rows: -torch.arange(4.).reshape(2, 2)[rows])
    store.save()
    f = tmp_path/"reference"/"reference.npz"; f.write_bytes(f.read_bytes()[:50])
    again = ReferenceStore(tmp_path/"reference", m)
    assert again.values == {} and any("reference is damaged (reference.npz" in w for w in warnings)
    assert torch.equal(again.get(keys, lambda rows: -torch.arange(4.).reshape(2, 2)[rows]), values) and again.computed == 2
