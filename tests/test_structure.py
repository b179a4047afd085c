"""The house's shape, as issue 26 set it: rooms import only rooms on lower floors (the notebooks' numbers in tens),
no private name crosses a room, the trainer is the loop, export cells stay small, and the demo and the evaluation
room never load the trainer."""
import ast, json, re, statistics, subprocess, sys
from pathlib import Path

from conftest import ROOT

PKG, NBS = ROOT / "hanorec", ROOT / "nbs"


def _modules() -> dict[str, Path]:
    return {p.stem: p for p in PKG.glob("*.py") if not p.name.startswith("_")}


def _notebook_of(path: Path) -> str:
    m = re.search(r"File to edit: \.\./nbs/(\S+?)\.ipynb", path.read_text(encoding="utf-8"))
    assert m, f"{path} does not name its notebook"
    return m.group(1)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    "Each `from hanorec.X import a, b` / `from .X import ...` / `import hanorec.X` in the module: (X, names)."
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level == 1: out.append((mod.split(".")[0], [a.name for a in node.names]))
            elif mod.startswith("hanorec."): out.append((mod.split(".")[1], [a.name for a in node.names]))
            elif mod == "hanorec": out.extend((a.name, []) for a in node.names)
        elif isinstance(node, ast.Import):
            out.extend((a.name.split(".")[1], []) for a in node.names if a.name.startswith("hanorec."))
    return out


def test_no_private_name_crosses_a_room():
    crossing = [f"{p.name} imports {name} from {mod}" for p in _modules().values() for mod, names in _imports(p)
                if mod != p.stem for name in names if name.startswith("_") and not name.startswith("__")]
    assert not crossing, crossing


def test_rooms_import_only_rooms_below_them():
    """Notebooks are numbered by floor in tens (00 the ground: core, assets, metrics; 10 the data; 20 the models; 30 what
    training is made of; 40 the trainer; 50 what people run; 60 benchmarks; 70 the docs and the command line), and in
    order within a floor: a room may import only rooms with a lower number. So the numbers are an order of the import
    graph, which therefore has no cycle and no arrow up."""
    mods = _modules()
    number = {m: _notebook_of(p) for m, p in mods.items()}
    assert all(re.fullmatch(r"\d\d_[a-z_]+", n) for n in number.values()), sorted(number.values())
    assert len(set(number.values())) == len(number)
    up = [f"{number[m]} imports {number[dep]}" for m, p in mods.items()
          for dep, _ in _imports(p) if dep in mods and dep != m and number[dep] >= number[m]]
    assert not up, sorted(set(up))


def test_the_demo_and_the_evaluation_never_load_the_trainer():
    for room in ("demo", "evaluation"):
        code = f"import hanorec.{room}, sys; assert 'hanorec.train' not in sys.modules, sorted(m for m in sys.modules if m.startswith('hanorec'))"
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 0, (room, r.stderr[-2000:])


def test_the_trainer_is_the_loop():
    lines = len((PKG / "train.py").read_text(encoding="utf-8").splitlines())
    assert lines <= 350, f"hanorec/train.py has {lines} lines; the loop alone fits in 350"


def test_export_cells_are_small():
    sizes = {}
    for nb in sorted(NBS.glob("*.ipynb")):
        for c in json.loads(nb.read_text(encoding="utf-8"))["cells"]:
            src = "".join(c["source"])
            if c["cell_type"] == "code" and re.match(r"#\|\s*export\b", src):
                sizes.setdefault(nb.name, []).append(len(src.splitlines()))
    big = [(nb, n) for nb, ns in sizes.items() for n in ns if n > 60]
    assert not big, f"export cells over 60 lines: {big}"
    every = [n for ns in sizes.values() for n in ns]
    assert statistics.median(every) <= 20, statistics.median(every)


def test_figures_are_stored_once():
    "A notebook's saved output holds a figure's data, never a copy of plotly.js (4.8 MB each); the docs site ships it once."
    heavy = [(nb.name, i) for nb in sorted(NBS.glob("*.ipynb"))
             for i, c in enumerate(json.loads(nb.read_text(encoding="utf-8"))["cells"]) for o in c.get("outputs", [])
             if len(json.dumps(o)) > 1_000_000]
    assert not heavy, f"cell outputs over 1 MB (plotly.js stored with a figure?): {heavy}"
