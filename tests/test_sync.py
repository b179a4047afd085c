"CI's guard: a notebook changed without `nbdev_export` must fail the sync check with a message that says what to run."
import os, shutil, subprocess, sys
from pathlib import Path

import nbformat

from conftest import ROOT


def _copy_project(dst: Path) -> Path:
    for name in ("nbs", "hanorec", "scripts"):
        shutil.copytree(ROOT / name, dst / name, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    for name in ("settings.ini", "setup.py", "pyproject.toml", "README.md", "_quarto.yml"):
        shutil.copy(ROOT / name, dst / name)
    return dst


def _check(project: Path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", str(project / "scripts" / "check_sync.sh")], capture_output=True, text=True, env=env)


def test_in_sync_project_passes(tmp_path):
    r = _check(_copy_project(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "ok:" in r.stdout


def test_notebook_changed_without_export_fails_with_what_to_run(tmp_path):
    project = _copy_project(tmp_path)
    nb_path = project / "nbs" / "00_core.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith("#| export") and "def hanorec_home" in c.source)
    cell.source += "\n\ndef added_without_export(): return 1\n"
    nbformat.write(nb, nb_path)
    subprocess.run([str(Path(sys.executable).parent / "nbdev_clean"), "--fname", str(nb_path)], cwd=project, check=True)
    r = _check(project)
    assert r.returncode == 1
    assert "hanorec/ differs from what the notebooks export" in r.stderr
    assert "run 'nbdev_export'" in r.stderr
    assert "core.py" in r.stderr
    # the check never touches the working tree
    assert "added_without_export" not in (project / "hanorec" / "core.py").read_text()


def test_unclean_notebook_and_stale_readme_fail(tmp_path):
    project = _copy_project(tmp_path)
    nb_path = project / "nbs" / "00_core.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code")
    cell.execution_count, cell.metadata["ExecuteTime"] = 7, {"end_time": "2026-11-23"}  # what nbdev_clean strips
    nbformat.write(nb, nb_path)
    (project / "README.md").write_text("stale\n")
    r = _check(project)
    assert r.returncode == 1
    assert "nbdev_clean would change them" in r.stderr and "00_core.ipynb" in r.stderr
    assert "README.md differs" in r.stderr and "hanorec docs --readme" in r.stderr
