import os, shutil, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def run_hanorec(*args, env=None, cwd=None, check=False):
    "Run the installed `hanorec` command as a user would, returning the CompletedProcess."
    exe = Path(sys.executable).parent / "hanorec"
    full_env = {**os.environ, "HANOREC_PROGRESS": "0", **(env or {})}
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, env=full_env, cwd=cwd or ROOT, check=check)


@pytest.fixture(scope="session")
def browser():
    "A headless Debian chromium driven by Playwright; under CI=true a missing browser fails instead of skipping."
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true": pytest.fail(f"{CHROMIUM} is missing: CI must run the browser tests (apt-get install -y chromium)")
        pytest.skip(f"{CHROMIUM} not installed")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def shots(tmp_path):
    "Where screenshots go: $HANOREC_SCREENSHOTS if set (to look at them), else the test's temporary folder."
    d = Path(os.environ.get("HANOREC_SCREENSHOTS") or tmp_path)
    d.mkdir(parents=True, exist_ok=True)
    return d


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than ~30 s; CI runs it too (scripts/test.sh runs every test)")


# The probe corpora of issue 25 (tests/test_probe_*.py) share these.
PROBE_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HANOREC_PROGRESS": "0", "OMP_NUM_THREADS": "1"}


def tiny_world(out:Path) -> Path:
    "A synthetic world of 8 items and 12 users (each has met 4 items, 4 candidates each), prepared into `out` by the real command."
    r = run_hanorec("data", "prepare", "synthetic", "--users", 12, "--items", 8, "--min-user", 3, "--candidates", 4, "--out", out, env=PROBE_ENV)
    assert r.returncode == 0, r.stderr
    return out


def tiny_sft(data:Path, out:Path) -> Path:
    "An encoder SFT run of 3 steps on `data`, trained into `out` by the real command."
    r = run_hanorec("train", f"data={data}", f"out={out}", "model=seqrec", "optim.max_steps=3", "optim.batch_size=4", env=PROBE_ENV)
    assert r.returncode == 0, r.stderr
    return out


def refused(capsys, argv, *said):
    "Run the CLI in this process; it must exit 2 with one error naming what `said` says, a hint, and no traceback."
    from hanorec.cli import main
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("hanorec: error: ") and "\n  hint: " in err and "Traceback" not in err, err
    for s in said: assert s in err, (s, err)
    return err
