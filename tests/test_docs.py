"The offline docs site: built by `hanorec docs`, rendered by a real chromium."
import re
import textwrap

import nbformat
import pytest

from conftest import ROOT, run_hanorec
from hanorec.docsite import build_site, notebook_paths, read_page


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    "The project's own site, built once for this module as a user builds it."
    out = tmp_path_factory.mktemp("docs") / "site"
    r = run_hanorec("docs", "--out", out)
    assert r.returncode == 0, r.stderr
    return out


def _unfolded(page_html):
    "The page without its folded <details> elements (tests, source)."
    return re.sub(r"<details\b.*?</details>", "", page_html, flags=re.S)


def test_docs_writes_index_and_a_page_per_notebook(site):
    notebooks = notebook_paths(ROOT / "nbs")
    pages = sorted(p.name for p in site.glob("*.html"))
    assert pages == sorted(read_page(nb).slug + ".html" for nb in notebooks)
    assert "index.html" in pages
    assert (site / "assets" / "plotly.min.js").stat().st_size > 1_000_000  # figures work offline
    core = (site / "00_core.html").read_text()
    assert 'id="load_config"' in core and "<code>overrides</code>" in core  # API of exported names
    assert "#| export" not in core


def test_module_pages_read_as_docs(site):
    data = (site / "12_data.html").read_text()
    assert "test_eq" in data and "test_eq" not in _unfolded(data)  # the checks are there, folded
    assert '<details class="tests">' in data and '<details class="source">' in data
    assert "import pyarrow" not in _unfolded(data)  # the module's opening import block is not shown
    summary = read_page(ROOT / "nbs" / "12_data.ipynb").summary
    assert summary and data.count(summary) == 1 and data.count("<h1>") == 1  # title and summary once
    main = data.split('<main id="content">', 1)[1].split("</main>", 1)[0]
    assert "<h2>" not in main and "<h3>" not in main and main.count('class="heading"') > 10  # every heading has an id
    toc = re.search(r'<aside class="toc".*?</aside>', data, re.S).group(0)
    targets = re.findall(r'href="#([^"]+)"', toc)
    assert len(targets) > 10 and all(f'id="{t}"' in data for t in targets)  # the contents link to real anchors
    for page in site.glob("*.html"):
        for entry in re.findall(r'<div class="api".*?</table>', page.read_text(), re.S):
            assert "NoneType" not in entry, (page.name, entry[:200])


def test_optional_parameters_show_their_type_and_comment(site):
    core = (site / "00_core.html").read_text()
    entry = core.split('<div class="api" id="load_config">', 1)[1].split('<div class="api"', 1)[0]
    row = re.search(r"<tr><td><code>path</code></td><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td></tr>", entry).groups()
    assert row[0].endswith("| None</code>") and row[1] == "<code>None</code>" and row[2].strip()
    assert "\n    " in re.search(r'<pre class="signature">(.*?)</pre>', entry, re.S).group(1)  # long signature: one parameter a line


def test_api_entry_of_an_annotated_module(tmp_path, monkeypatch):
    "Annotations as written, with and without `from __future__ import annotations`; checks folded by the documented rule."
    pkg = tmp_path / "docpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    body = '''
        def load(path:str|None=None, # where the files are
                 strict:bool=False, # stop at the first bad line
                 limit=None) -> list[str]:
            "Read the lines."
            return []
        '''
    (pkg / "future.py").write_text("from __future__ import annotations\n" + textwrap.dedent(body))
    (pkg / "plain.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    for name in ("future", "plain"):
        nbformat.write(nbformat.v4.new_notebook(cells=[
            nbformat.v4.new_markdown_cell(f"# {name}\n\n> Loading {name} files."),
            nbformat.v4.new_code_cell(f"#| default_exp {name}"),
            nbformat.v4.new_code_cell("#| export\nfrom __future__ import annotations\nimport json"),
            nbformat.v4.new_markdown_cell("## Loading"),
            nbformat.v4.new_code_cell("#| export\ndef load(path=None): ..."),
            nbformat.v4.new_code_cell("print(load())\ntest_eq(load(), [])", outputs=[nbformat.v4.new_output("stream", text="[]\n")]),
            nbformat.v4.new_code_cell("loaded_rows = load()\ntest_eq(loaded_rows, [])\nassert not loaded_rows"),
            nbformat.v4.new_code_cell("#| hide\nsecret_helper = 1"),
        ]), nbs / f"{name}.ipynb")
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# docpkg")]), nbs / "index.ipynb")
    build_site(nbs, tmp_path / "site", title="docpkg", lib="docpkg")
    for name in ("future", "plain"):
        page = (tmp_path / "site" / f"{name}.html").read_text()
        assert "NoneType" not in page and "&#x27;" not in re.search(r'<pre class="signature">(.*?)</pre>', page, re.S).group(1)
        assert "<tr><td><code>path</code></td><td><code>str | None</code></td><td><code>None</code></td><td>where the files are</td></tr>" in page
        assert "<tr><td><code>limit</code></td><td></td><td><code>None</code></td><td></td></tr>" in page  # no annotation: no guessed type
        assert "<td><em>returns</em></td><td><code>list[str]</code></td>" in page
        assert page.count(f"Loading {name} files.") == 1 and page.count(f"<h1>{name}</h1>") == 1
        assert '<h2 id="loading" class="heading">Loading<a class="anchor" href="#loading"' in page and 'href="#load"' in page
        shown = _unfolded(page)
        assert "import json" not in page and "secret_helper" not in page
        assert "print" in shown and "[]\n</pre>" in shown  # the example that prints stays, with its output
        assert "test_eq" not in shown and "loaded_rows" not in shown and page.count('<details class="tests">') == 2


def test_docs_site_renders_in_chromium(site, browser, shots):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto((site / "index.html").as_uri())
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

    page.goto((site / "12_data.html").as_uri())
    page.wait_for_selector("aside.toc a")
    assert page.locator("main#content h1").count() == 1
    assert page.locator("main#content h2:not([id]), main#content .md h3:not([id])").count() == 0
    loose = page.evaluate("""() => { const w = document.createTreeWalker(document.querySelector('main'), NodeFilter.SHOW_TEXT);
        let n = 0; while (w.nextNode()) if (w.currentNode.textContent.includes('test_eq') && !w.currentNode.parentElement.closest('details')) n++;
        return n; }""")
    assert loose == 0  # no test line outside a folded element
    tests = page.locator("details.tests").first
    assert not tests.locator("pre").is_visible()  # folded until asked
    tests.locator("summary").click()
    assert tests.locator("pre").is_visible()
    section = page.locator("aside.toc a.toc-h2").nth(1)
    target = section.get_attribute("href")
    section.click()
    assert page.url.endswith(target) and page.locator(f"main#content h2{target}").is_visible()
    page.screenshot(path=str(shots / "docs-data.png"), full_page=False)
    page.close()


def test_readme_is_generated_from_the_index_notebook():
    from hanorec.docsite import readme_text
    assert (ROOT / "README.md").read_text() == readme_text(ROOT / "nbs" / "index.ipynb", prefix="nbs")


def test_readme_table_is_the_quickstart_report_it_reads():
    """The index notebook's cell that prints the quickstart report's table stores its output; that output must be what
    the cell prints from nbs/reports/quickstart_report.md now (a report replaced without rerunning the cell left the
    README showing an older version's table)."""
    import contextlib, io, json, os
    nb = json.loads((ROOT / "nbs" / "index.ipynb").read_text())
    cells = [c for c in nb["cells"] if c["cell_type"] == "code" and "reports/quickstart_report.md" in "".join(c["source"])]
    assert len(cells) == 1
    shown = "".join(o.get("text", "") if isinstance(o.get("text", ""), str) else "".join(o["text"]) for o in cells[0]["outputs"])
    out, here = io.StringIO(), os.getcwd()
    try:
        os.chdir(ROOT / "nbs")
        with contextlib.redirect_stdout(out): exec("".join(cells[0]["source"]), {})
    finally: os.chdir(here)
    assert shown == out.getvalue(), "rerun the index notebook's report cell (its stored table is not the report's)"
