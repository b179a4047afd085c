"The demo under the probe of issue 25: runs that cannot load beside one that can, a port in use, gradio missing, 'serving on' only once it answers, and `hanorec bench demo`'s report."
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest

from conftest import run_hanorec

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HANOREC_PROGRESS": "0"}
GRID = {"name": "demo probe", "datasets": {"world": {"synthetic": {"users": 30, "items": 60}}}, "settings": ["device=cpu"],
        "stages": [{"name": "sft", "settings": ["model=seqrec", "optim.epochs=2", "optim.batch_size=16"]}]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    "One good encoder run (`good`), a copy with a truncated metrics.json (`cut`) and one without model/ (`no-model`)."
    from hanorec.grid import load_grid, run_grid
    work = tmp_path_factory.mktemp("probe-demo")
    with contextlib.redirect_stdout(io.StringIO()): run_grid(load_grid(GRID), work/"grid", device="cpu")
    out = work/"runs"
    shutil.copytree(work/"grid"/"world"/"seed-0"/"sft", out/"good")
    shutil.copytree(out/"good", out/"cut"); (out/"cut"/"metrics.json").write_text('{"best_step": 2, "ste')
    shutil.copytree(out/"good", out/"no-model"); shutil.rmtree(out/"no-model"/"model")
    return out


def test_broken_runs_are_listed_with_why_and_the_good_one_works(runs, browser):
    "The demo starts beside two runs that cannot load; the good run renders; picking a broken one shows its reason on the page."
    from playwright.sync_api import expect
    from hanorec.demo import launch
    port = _free_port()
    app = launch([runs], port=port, block=False)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"http://127.0.0.1:{port}/")
        expect(page.locator("#ranking .hn-target").first).to_contain_text("true next item", timeout=60_000)  # the good run
        expect(page.locator("body")).to_contain_text("cut cannot be shown: metrics.json is not valid JSON")  # the note under the title
        run = page.locator("#run input")
        run.click()
        expect(page.get_by_role("option", name="no-model (cannot load: model/ is missing)")).to_be_visible(timeout=30_000)
        run.fill("cut (cannot"); run.press("Enter")  # pick the broken run from the list
        expect(page.locator("#message")).to_contain_text("cut cannot be shown: metrics.json is not valid JSON", timeout=30_000)
        expect(page.locator("#ranking")).to_have_text("", timeout=30_000)
        assert page.locator(".toast-body").count() == 0, page.locator(".toast-body").all_inner_texts()  # no Python error in a toast
        assert not errors, errors
        page.close()
    finally:
        app.close()


def test_no_run_that_loads_is_one_line_naming_the_folder(runs, tmp_path):
    only = tmp_path/"only-broken"
    shutil.copytree(runs/"cut", only/"cut")
    r = run_hanorec("demo", only, "--port", _free_port(), env=ENV)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "serving on" not in r.stdout
    first = r.stderr.strip().splitlines()[0]
    assert first == f"hanorec: error: no run under {only} can be shown (cut: metrics.json is not valid JSON (line 1, column 18: Unterminated string))", first
    assert "hint: finish a run" in r.stderr


def test_port_in_use_is_one_line_and_exit_2(runs):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0)); taken.listen()
        port = taken.getsockname()[1]
        r = run_hanorec("demo", runs, "--port", port, env=ENV)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stdout == "" and "Traceback" not in r.stderr
    assert r.stderr.splitlines() == [f"hanorec: error: port {port} on 127.0.0.1 is in use",
                                     f"  hint: pass --port N (e.g. --port {port + 1}) or stop the other server"]


def test_launch_without_gradio_names_the_install_command(runs):
    "launch() itself (not only the CLI) checks for gradio before loading or printing anything."
    code = ("import sys; sys.modules['gradio'] = None\n"  # `import gradio` now raises ImportError, as where it is not installed
            "from hanorec.core import HanorecError\nfrom hanorec.demo import launch\n"
            f"try: launch([{str(runs)!r}], port={_free_port()})\nexcept HanorecError as e: print('ERROR', e); sys.exit(2)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **ENV}, timeout=120)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stdout.startswith("ERROR the demo needs gradio, which is not installed") and 'pip install -e ".[demo]"' in r.stdout
    assert "serving on" not in r.stdout and "Traceback" not in r.stderr


def test_serving_on_is_printed_only_once_the_page_answers(runs):
    port = _free_port()
    exe = os.path.join(os.path.dirname(sys.executable), "hanorec")
    proc = subprocess.Popen([exe, "demo", str(runs), "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, **ENV})
    try:
        before = []
        for line in proc.stdout:
            if "serving on" in line: break
            before.append(line)
        else: pytest.fail(f"the demo ended without serving: {''.join(before)[-2000:]}")
        assert line.strip() == f"hanorec demo: serving on http://127.0.0.1:{port} (Ctrl-C stops it)"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as page:  # at once: no retry, no wait
            assert page.status == 200 and b"hanorec demo" in page.read()
        assert not any("serving" in l for l in before), before
    finally:
        proc.send_signal(signal.SIGINT)
        try: proc.wait(timeout=30)
        except subprocess.TimeoutExpired: proc.kill()


def test_bench_demo_writes_its_report(tmp_path):
    "`hanorec bench demo --quick`: 3 clients, 3 requests each, against a tiny experiment; the JSON has the latencies' fields (no timing asserted)."
    r = run_hanorec("bench", "demo", "--quick", "--out", tmp_path, env=ENV)
    assert r.returncode == 0, (r.stdout, r.stderr[-3000:])
    report = json.loads((tmp_path/"demo.json").read_text())
    d = report["details"]
    assert report["name"] == "demo" and report["quick"] is True and report["met"] is None  # quick: no goal applies
    assert (d["requests"], d["error_count"], report["sizes"]["clients"], report["sizes"]["requests_per_client"]) == (9, 0, 3, 3)
    assert 0 < d["p50_s"] <= d["p95_s"] <= d["max_s"] and report["median_s"] == d["p50_s"]
    assert report["checks"][0]["what"] == "p95 latency per request with 3 clients, s" and report["checks"][0]["value"] == pytest.approx(d["p95_s"], abs=1e-4)
    assert d["requests_per_s"] > 0 and len(d["first_request_per_run_s"]) == 3  # popularity, the encoder's SFT, HaNoRec


@pytest.mark.parametrize("room", ["hanorec.demo", "hanorec.evaluation"])
def test_the_demo_and_evaluation_never_load_the_trainer(room):
    "Reading finished runs needs no trainer: importing the room in a fresh interpreter leaves hanorec.train unloaded."
    code = f"import {room}, sys; assert 'hanorec.train' not in sys.modules, sorted(m for m in sys.modules if m.startswith('hanorec'))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **ENV}, timeout=120)
    assert r.returncode == 0, r.stderr


def test_demo_without_arguments_opens_the_quickstart_run_here_only(runs, tmp_path):
    "The last quickstart is recorded where it ran: another directory (another checkout, another user) does not open it."
    from hanorec.demo import latest_quickstart
    from hanorec.experiments import remember_quickstart
    mine, other = tmp_path/"mine", tmp_path/"other"
    mine.mkdir(); other.mkdir()
    remember_quickstart(runs, mine)  # as `hanorec quickstart --out RUNS` run from `mine` leaves it
    assert latest_quickstart(mine) == runs
    r = run_hanorec("demo", "--port", _free_port(), env=ENV, cwd=other)
    assert r.returncode == 2 and "Traceback" not in r.stderr, (r.stdout, r.stderr)
    assert r.stderr.splitlines()[0] == f"hanorec: error: there is no quickstart output to show in {other.resolve()}", r.stderr
    assert "hint: make one with: hanorec quickstart, run from this directory" in r.stderr
