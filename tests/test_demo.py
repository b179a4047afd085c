"The demo's real Gradio page in Debian's chromium (Playwright), and 20 concurrent clients through gradio_client."
import contextlib
import io
import json
import os
import socket
import statistics
import threading
import time
from urllib.parse import urlparse

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from hanorec.grid import load_grid, run_grid

GRID = {"name": "demo test", "datasets": {"world": {"synthetic": {"users": 60, "items": 80}}}, "settings": ["device=cpu"],
        "stages": [{"name": "popularity", "settings": ["model=popularity"]},
                   {"name": "sft", "about": "encoder, SFT", "settings": ["model=seqrec", "optim.epochs=5", "optim.batch_size=16"]},
                   {"name": "hanorec", "about": "encoder, HaNoRec", "start": "sft",
                    "settings": ["init=sft", "objective=hanorec", "nodo.sigma=0.1", "nodo.mode=logits", "optim.max_steps=12",
                                 "optim.batch_size=16", "eval.every=6", "eval.users=0"]}]}
ALL_LOADED = ("() => { const i = [...document.querySelectorAll('#history img')];"
              " return i.length > 0 && i.every(x => x.complete && x.naturalWidth > 0); }")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    "A small synthetic-world experiment (popularity, encoder SFT, HaNoRec) served by `hanorec.demo.launch` on 127.0.0.1."
    from hanorec.demo import launch
    out = tmp_path_factory.mktemp("demo")
    with contextlib.redirect_stdout(io.StringIO()): run_grid(load_grid(GRID), out, device="cpu")
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    app = launch([out], port=port, block=False)
    yield f"http://127.0.0.1:{port}"
    app.close()


def test_page_shows_a_user_their_rankings_and_hardness(server, browser, shots):
    from playwright.sync_api import expect
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    requested = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(server + "/")
    page.wait_for_function(ALL_LOADED, timeout=60_000)          # the first user's history: every image decoded
    user = page.locator("#user input")
    user.fill("u05"); user.press("Enter")                          # pick a user by id
    expect(page.locator("#history h3")).to_contain_text("User u05", timeout=30_000)
    page.wait_for_function(ALL_LOADED, timeout=30_000)
    ranking = page.locator("#ranking")
    expect(ranking.locator(".hn-target").first).to_contain_text("true next item")   # the true item marked, in each run's ranking
    assert ranking.locator(".hn-ranking").count() == 2            # SFT beside HaNoRec by default
    assert "true utility" in ranking.inner_text()                   # the synthetic world's truth
    page.screenshot(path=str(shots/"demo-user.png"), full_page=True)
    page.get_by_role("tab", name="Hardness").click()
    page.wait_for_selector("#hardness .js-plotly-plot", timeout=30_000)  # the hardness and beta histograms
    expect(page.locator("#pairs")).to_contain_text("hardness h")
    page.screenshot(path=str(shots/"demo-hardness.png"), full_page=True)
    page.get_by_role("tab", name="User").click()
    run = page.locator("#run input")
    run.fill("world/seed-0/popularity"); run.press("Enter")         # switch runs
    page.wait_for_selector("#ranking [data-run='world/seed-0/popularity']", timeout=30_000)
    user.fill("nobody"); user.press("Enter")                       # an unknown id: a message on the page
    expect(page.locator("#message")).to_contain_text("is not a test user", timeout=30_000)
    page.close()
    outside = {u for u in requested if not u.startswith("data:") and urlparse(u).hostname not in ("127.0.0.1", "localhost")}
    assert not outside, f"the page fetched from outside this machine: {sorted(outside)[:5]}"  # offline: no CDN, no fonts, no analytics


def test_twenty_concurrent_clients_are_all_answered(server, tmp_path):
    "A load test: 20 gradio_client clients for a bounded time; every request answered without error; p50 and p95 reported."
    from gradio_client import Client
    users = [f"u{i:02d}" for i in range(20)]
    latencies, errors, stop = [], [], time.time() + 15
    def client(n):
        c = Client(server, verbose=False)
        while time.time() < stop:
            t = time.perf_counter()
            try:
                out = c.predict(users[n], "world/seed-0/sft", "world/seed-0/hanorec", api_name="/view")
                assert "true next item" in out[3], out[0]
                latencies.append(time.perf_counter() - t)
            except Exception as e: errors.append(repr(e))
    threads = [threading.Thread(target=client, args=(n,)) for n in range(20)]
    for t in threads: t.start()
    for t in threads: t.join(timeout=120)
    assert not errors, errors[:3]
    assert len(latencies) >= 20, latencies
    q = statistics.quantiles(latencies, n=20)
    report = {"clients": 20, "requests": len(latencies), "p50_s": statistics.median(latencies), "p95_s": q[18]}
    print("demo load:", json.dumps(report))
    (tmp_path/"demo-load.json").write_text(json.dumps(report))
