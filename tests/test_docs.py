"The offline docs site: built by `hanorec docs`, rendered by a real chromium."
from pathlib import Path

from conftest import ROOT, run_hanorec
from hanorec.docsite import notebook_paths, read_page


def test_docs_writes_index_and_a_page_per_notebook(tmp_path):
    out = tmp_path / "site"
    r = run_hanorec("docs", "--out", out)
    assert r.returncode == 0, r.stderr
    notebooks = notebook_paths(ROOT / "nbs")
    pages = sorted(p.name for p in out.glob("*.html"))
    assert pages == sorted(read_page(nb).slug + ".html" for nb in notebooks)
    assert "index.html" in pages
    assert (out / "assets" / "plotly.min.js").stat().st_size > 1_000_000  # figures work offline
    core = (out / "00_core.html").read_text()
    assert 'id="load_config"' in core and "<code>overrides</code>" in core  # API of exported names
    assert "#| export" not in core


def test_docs_site_renders_in_chromium(tmp_path, browser, shots):
    out = tmp_path / "site"
    assert run_hanorec("docs", "--out", out).returncode == 0
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto((out / "index.html").as_uri())
    page.wait_for_selector("nav#sidebar a")
    assert page.title().startswith("hanorec")
    links = page.locator("nav#sidebar > a")  # one link per notebook, index included
    assert links.count() == len(notebook_paths(ROOT / "nbs"))
    assert page.locator("main#content h1").first.inner_text().strip() == "hanorec"
    page.screenshot(path=str(shots / "docs-index.png"), full_page=False)

    page.locator("nav#sidebar a", has_text="core").first.click()
    page.wait_for_selector("div.api#load_config")
    assert page.url.endswith("00_core.html")
    assert page.locator("nav#sidebar a.current").inner_text() == "core"
    assert page.locator("div.api#load_config table.params tr").count() >= 4  # header + cls, path, overrides
    page.locator("div.api#load_config").scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "docs-core.png"), full_page=False)
    page.close()


def test_readme_is_generated_from_the_index_notebook():
    from hanorec.docsite import readme_text
    assert (ROOT / "README.md").read_text() == readme_text(ROOT / "nbs" / "index.ipynb", prefix="nbs")
