"Safe defaults, pinned: no remote code, no pickles, no eval, images kept in their folder, no secrets, no network."
import ast, functools, inspect, re, socket, subprocess
from pathlib import Path

import pytest

from conftest import ROOT

SOURCES = sorted((ROOT/"hanorec").glob("*.py"))


@functools.cache
def trees() -> list:
    return [(path, ast.parse(path.read_text(encoding="utf-8"))) for path in SOURCES]


def calls(name:str):
    "Every call of `name` (`torch.load`, `eval`, ...) in the package: (file:line, the ast.Call)."
    *owner, attr = name.split(".")
    for path, tree in trees():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call): continue
            f = node.func
            hit = (isinstance(f, ast.Name) and not owner and f.id == attr) or \
                  (isinstance(f, ast.Attribute) and f.attr == attr and owner and isinstance(f.value, ast.Name) and f.value.id == owner[0])
            if hit: yield f"{path.name}:{node.lineno}", node


def keyword(call:ast.Call, name:str):
    kw = [k.value for k in call.keywords if k.arg == name]
    return kw[0].value if kw and isinstance(kw[0], ast.Constant) else ("<not a constant>" if kw else None)


def test_calls_finds_what_it_looks_for():  # the scanner itself: a check that finds nothing would pass for ever
    assert any(True for _ in calls("torch.load")) and any(True for _ in calls("yaml.safe_load"))


def test_remote_code_is_off_unless_asked():
    from hanorec.models import ComposedMLLM, load_recommender
    assert inspect.signature(load_recommender).parameters["trust_remote_code"].default is False
    assert inspect.signature(ComposedMLLM.from_pretrained).parameters["trust_remote_code"].default is False
    assert not [p.name for p in SOURCES if re.search(r"trust_remote_code\s*=\s*True", p.read_text(encoding="utf-8"))]


def test_every_torch_load_refuses_pickled_code():
    loads = list(calls("torch.load"))
    assert loads and not [where for where, c in loads if keyword(c, "weights_only") is not True], "torch.load without weights_only=True"
    assert not [where for where, c in calls("np.load") if keyword(c, "allow_pickle") not in (None, False)]
    assert not list(calls("pickle.load")) and not list(calls("pickle.loads"))


def test_no_data_is_evaluated_as_code():
    assert not list(calls("eval")) and not list(calls("exec"))
    assert not list(calls("yaml.load")) and not list(calls("yaml.unsafe_load"))  # YAML only through safe_load


@pytest.mark.parametrize("path", ["../outside.jpg", "/etc/passwd", "images/../../x.jpg", ""])
def test_an_image_path_never_leaves_its_folder(tmp_path, path):
    from hanorec.core import HanorecError
    from hanorec.images import load_item_image
    (tmp_path/"images").mkdir()
    with pytest.raises(HanorecError, match="image path"): load_item_image(tmp_path, path)


SECRET = re.compile(r"hf_[A-Za-z0-9]{30,}|sk-[A-Za-z0-9]{20,}|(?:AKIA|ASIA)[0-9A-Z]{16}|aws_secret_access_key\s*[=:]\s*\S{20,}")


def test_no_token_like_secret_is_tracked():
    assert SECRET.search("token = hf_" + "a1B2c3D4" * 5) and SECRET.search("AKIA" + "ABCDEFGHIJKLMNOP")  # the pattern finds one
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split("\0")
    found = []
    for name in filter(None, files):
        p = ROOT/name
        if not p.is_file() or p.stat().st_size > 5_000_000: continue
        text = p.read_bytes().decode("utf-8", errors="ignore")
        found += [f"{name}: {m.group()[:8]}..." for m in SECRET.finditer(text)]
    assert not found, found


def test_training_needs_no_network(tmp_path, monkeypatch):
    "A guard, not a mock: any connection or name lookup fails, and a fresh dataset still prepares, embeds its items and trains."
    def refused(*a, **k): raise OSError("network used at run time")
    for owner, name in ((socket.socket, "connect"), (socket.socket, "connect_ex"), (socket, "create_connection"), (socket, "getaddrinfo")):
        monkeypatch.setattr(owner, name, refused)
    from hanorec.synthetic import prepare_synthetic
    from hanorec.settings import train_config
    from hanorec.train import train
    prepare_synthetic(tmp_path/"data", users=30, items=60, seed=1, with_images=False)
    m = train(train_config(None, [f"data={tmp_path/'data'}", f"out={tmp_path/'run'}", "model=seqrec", "optim.epochs=0", "optim.max_steps=2",
                                  "optim.batch_size=8", "eval.every=0", "eval.users=5", "eval.test=false"]))
    assert m["steps"] == 2 and (tmp_path/"data"/"features"/"minilm"/"features.npy").exists()
