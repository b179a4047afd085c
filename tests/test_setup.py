"""The first command sets up every use the README names: what `scripts/quickstart.sh` installs covers the quickstart,
the demo, the notebooks and the docs; the python3 kernel runs a notebook; a missing optional part is one line."""
import configparser, importlib.metadata as md, os, re, subprocess, sys, textwrap
from pathlib import Path

import pytest

from hanorec.assets import USES

from conftest import run_hanorec

ROOT = Path(__file__).resolve().parents[1]


def _extras(extra:str) -> set[str]:
    "The distributions `pip install -e .[extra]` asks for (setup.py builds its extras from settings.ini)."
    cfg = configparser.ConfigParser(delimiters=["="]); cfg.read(ROOT/"settings.ini", encoding="utf-8")
    reqs = lambda key: cfg["DEFAULT"].get(key, "").split()
    extras = {"offline": reqs("offline_requirements"), "demo": reqs("demo_requirements"), "notebooks": reqs("notebook_requirements")}
    extras["all"] = extras["offline"] + extras["demo"] + extras["notebooks"]
    extras["dev"] = extras["all"] + reqs("dev_requirements")
    return {_norm(re.split(r"[<>=!~\[ ]", r)[0]) for r in reqs("requirements") + extras[extra]}


def _norm(name:str) -> str: return re.sub(r"[-_.]+", "-", name).lower()


def _closure(dists:set[str]) -> set[str]:
    "Every installed distribution the named ones pull in (their requirements without extras, transitively)."
    seen, todo = set(), list(dists)
    while todo:
        d = todo.pop()
        if d in seen: continue
        seen.add(d)
        try: reqs = md.requires(d) or []
        except md.PackageNotFoundError: continue
        todo += [_norm(re.split(r"[<>=!~\[ ;(]", r)[0]) for r in reqs if "extra ==" not in r]
    return seen


def test_quickstart_script_installs_every_use():
    "Every module each use imports comes with the extras scripts/quickstart.sh installs, not only with the dev extra."
    script = (ROOT/"scripts"/"quickstart.sh").read_text()
    extra = re.search(r"bash scripts/setup\.sh (\w+)", script).group(1)
    assert "hanorec env --check all" in script  # checked before the main job starts
    installed = _closure(_extras(extra) | {"torch"})  # torch: setup.sh installs it first
    owners = md.packages_distributions()
    for use in USES.values():
        for module in use.modules:
            dists = {_norm(d) for d in owners.get(module, [])}
            assert dists & installed, f"{use.name} imports {module} ({dists}), which `setup.sh {extra}` does not install"


def test_every_use_ready_here():
    "In the environment the tests run in (set up by scripts/setup.sh), `hanorec env --check all` passes."
    r = run_hanorec("env", "--check", "all")
    assert r.returncode == 0, r.stderr
    assert "ready: quickstart, demo, notebooks, docs" in r.stdout


def test_python3_kernel_runs_a_notebook(tmp_path):
    "A notebook executes on the `python3` kernel the notebooks name, and imports this hanorec."
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "python3", "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell("import hanorec, sys\nprint(hanorec.__file__, sys.prefix)")]
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    out = nb.cells[0].outputs[0]["text"]
    assert str(ROOT/"hanorec") in out and sys.prefix in out  # the kernel is this environment's, with the editable package


_BLOCK = textwrap.dedent("""
    import sys
    class Gone:
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] == {name!r}: raise ModuleNotFoundError(f"No module named '{{name}}'", name=name)
    sys.meta_path.insert(0, Gone())
    from hanorec.cli import main
    sys.exit(main({argv!r}))
""")


@pytest.mark.parametrize("module,argv,install", [
    ("gradio", ["demo", "--port", "0"], 'pip install -e ".[demo]"'),
    ("nbclient", ["env", "--check", "notebooks"], 'pip install -e ".[notebooks]"'),
])
def test_missing_optional_part_is_one_line(module, argv, install, tmp_path):
    "A use whose package is not installed: exit 2 and one line naming the install command; nothing claims to serve."
    r = subprocess.run([sys.executable, "-c", _BLOCK.format(name=module, argv=argv)], capture_output=True, text=True,
                       cwd=tmp_path, env={**os.environ, "HANOREC_HOME": str(tmp_path/"home")}, timeout=120)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "serving on" not in r.stdout
    assert install in r.stderr and module in r.stderr


def test_a_broken_install_is_not_called_missing(tmp_path):
    "gradio installed but one of its own modules failing to import is a real error, not 'run pip install' (which would change nothing)."
    script = textwrap.dedent("""
        import sys, hanorec.cli as cli
        def broken(args): raise ModuleNotFoundError("No module named 'gradio.themes'", name="gradio.themes")  # as a damaged gradio would
        cli.cmd_env = broken
        sys.exit(cli.main(["env"]))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode not in (0, 2), (r.stdout, r.stderr)
    assert "gradio.themes" in r.stderr and "pip install" not in r.stderr
