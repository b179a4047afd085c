"`hanorec bench`: every benchmark runs at its quick size and writes JSON of the common shape; `bench all --quick` writes BENCHMARKS.md."
import json

import pytest

from conftest import run_hanorec

NAMES = ["scoring", "label-scoring", "preference", "mfu", "lm-step", "quickstart", "eval", "data-prepare", "summaries"]
COMMON = ("name", "about", "command", "ratio", "goal", "met", "checks", "median_s", "spread_s", "sizes", "machine", "details",
          "quick", "seconds", "hanorec")


@pytest.fixture(scope="module")
def quick_all(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    r = run_hanorec("bench", "all", "--quick", "--out", d / "json", "--markdown", d / "BENCHMARKS.md", env={"OMP_NUM_THREADS": "1"})
    return d, r


def _shape(report, name):
    assert set(COMMON) <= set(report), set(COMMON) - set(report)
    assert report["name"] == name and report["quick"] is True and report["command"] == f"hanorec bench {name} --quick"
    assert {"cores", "torch_threads", "device", "dtype"} <= set(report["machine"]) and report["machine"]["cores"] >= 1
    assert report["checks"] and report["ratio"] == report["checks"][0]["value"]
    for c in report["checks"]:
        assert {"what", "value", "goal", "op", "met"} <= set(c) and c["op"] in (">=", "<=")
    assert report["met"] in (True, False, None)
    assert report["median_s"] > 0 and report["spread_s"] >= 0 and report["sizes"]
    if report["met"] is False: assert report["profile"], "a missed goal says where the time goes"


def test_bench_all_quick_writes_every_benchmark_in_the_common_shape(quick_all):
    d, r = quick_all
    assert r.returncode == 0, r.stdout + r.stderr
    for name in NAMES:
        _shape(json.loads((d / "json" / f"{name}.json").read_text()), name)
    qs = json.loads((d / "json" / "quickstart.json").read_text())
    assert qs["met"] is None and all(c["met"] is None for c in qs["checks"])  # a quick stand-in: no goal applies
    assert qs["details"]["peak_memory_gb"] > 0
    sc = json.loads((d / "json" / "scoring.json").read_text())
    assert sc["details"]["max_abs_diff"] < 1e-4 and sc["details"]["ideal"] > 1
    pref = json.loads((d / "json" / "preference.json").read_text())
    assert len(pref["checks"]) == 2 and pref["details"]["check"]["same_answer_tokens"]


def test_benchmarks_md_has_a_row_per_benchmark(quick_all):
    d, r = quick_all
    md = (d / "BENCHMARKS.md").read_text()
    assert "Machine:" in md and "Quick sizes" in md
    for name in NAMES:
        assert f"| {name} |" in md and f"`hanorec bench {name} --quick`" in md, name
    if "| **no** |" in md: assert "## Where the time goes" in md


def test_language_model_benchmarks_quick(tmp_path):
    "`lm-step` and `label-scoring` run by name at quick size: the common shape, positive finite ratios, one forward a label batch."
    r = run_hanorec("bench", "lm-step", "label-scoring", "--quick", "--out", tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    step, label = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("lm-step", "label-scoring"))
    for report, name in ((step, "lm-step"), (label, "label-scoring")):
        _shape(report, name)
        assert all(0 < c["value"] < float("inf") for c in report["checks"]), report["checks"]
        tokens = report["details"]["prompt_tokens_per_prompt"]
        assert tokens["head_token"] < tokens["head_text"] and tokens["label_token"] < tokens["label_text"]
    assert [c["what"].split()[0] for c in step["checks"]] == ["task=head", "task=label"]
    assert all(step["details"][t]["tokens_per_s"] > 0 for t in ("head", "label"))
    assert label["details"]["decoder_passes_per_batch"] == {"label": 1, "title": 2}
    assert "lm-step: ratio" in r.stdout and "label-scoring: ratio" in r.stdout


def test_one_benchmark_the_list_and_an_unknown_name(tmp_path):
    r = run_hanorec("bench", "data-prepare", "--quick", "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    _shape(json.loads((tmp_path / "data-prepare.json").read_text()), "data-prepare")
    listed = run_hanorec("bench", "--list").stdout
    assert all(name in listed for name in [*NAMES, "all"]), listed
    bad = run_hanorec("bench", "nope", "--out", tmp_path)
    assert bad.returncode != 0 and "unknown benchmark" in bad.stderr
