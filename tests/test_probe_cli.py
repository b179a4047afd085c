"""The command-line corpus: every bad argument the new-user probe of issue 25 met in summarize, models check, env, train's
settings and data prepare, with its exact answer.

The promise for each: exit code 2 and one error that names the flag or key (and its value), then a hint with the fix;
no traceback, and nothing written (no cache, no run folder, no converted model) before the refusal.
"""
import json

import pytest

from conftest import PROBE_ENV as ENV, refused as _refused, run_hanorec, tiny_world



@pytest.fixture(scope="module")
def data(tmp_path_factory):
    "A synthetic world of 8 items and 12 users; no test here fills its item-summary cache, so a refusal that wrote one shows."
    d = tmp_path_factory.mktemp("probe-cli")/"data"
    tiny_world(d)
    return d


@pytest.fixture
def home(tmp_path, monkeypatch):
    "An empty HANOREC_HOME: a refusal must come before SmolLM2 is converted into it."
    monkeypatch.setenv("HANOREC_HOME", str(tmp_path/"home"))
    return tmp_path/"home"


# (arguments after `summarize`, with {data} for the dataset; what the error says)
BAD_SUMMARIZE = [
    (["items", "{data}", "--batch-size", "0"], "batch_size=0 is below 1", "set batch_size (--batch-size) to 1 or more"),
    (["items", "{data}", "--batch-size", "-2"], "batch_size=-2 is below 1"),  # this one used to exit 0 having done nothing
    (["users", "{data}", "--backend", "lm", "--batch-size", "0", "--force"], "batch_size=0 is below 1", "its default 8"),
    (["users", "{data}", "--backend", "lm", "--max-new-tokens", "0"], "max_new_tokens=0 is below 1", "(--max-new-tokens) to 1 or more"),
    (["users", "{data}", "--block-size", "0"], "block_size=0 is below 1", "its default 3"),
    (["users", "{data}", "--model", "/nonexistent"], "model=/nonexistent is not read by the statistical backend", "--model needs --backend lm"),
    (["users", "{data}", "--max-new-tokens", "20"], "--max-new-tokens 20 is not read by the statistical backend", "add --backend lm, or drop --max-new-tokens"),
    (["users", "{data}", "--batch-size", "4"], "--batch-size needs --backend lm"),
    (["users", "{data}", "--device", "cpu"], "--device needs --backend lm"),
    (["items", "{data}", "--model", "/nonexistent"], "--model needs --backend hf or --rephrase"),
    (["items", "{data}", "--device", "cpu"], "--device needs --backend hf or --rephrase"),
    (["items", "{data}", "--backend", "hf", "--model", "/nonexistent", "--rephrase"], "--rephrase needs --backend vision"),
]


@pytest.mark.parametrize("args,said", [(a, said) for a, *said in BAD_SUMMARIZE], ids=lambda x: " ".join(x) if isinstance(x, list) else None)
def test_a_bad_summarize_option_is_refused_before_any_cache_or_model(data, home, capsys, args, said):
    _refused(capsys, ["summarize", *[a.format(data=data) for a in args]], *said)
    assert not (data/"summaries").exists()  # no cache folder, so no manifest to refuse the next run
    assert not home.exists()  # SmolLM2 was not converted


def test_a_cache_holding_no_record_does_not_block_the_next_run(data, tmp_path):
    "A run that failed before its first chunk left a manifest with its settings: the next run's settings take the cache over."
    own = tmp_path/"own"
    run_hanorec("data", "prepare", "synthetic", "--users", 12, "--items", 8, "--min-user", 3, "--candidates", 4, "--out", own, env=ENV, check=True)
    summarize = ["summarize", "users", own, "--no-item-summaries", "--users", 2]
    run_hanorec(*summarize, env=ENV, check=True)
    cache = own/"summaries"/"users-statistical-b3-titles"
    m = json.loads((cache/"manifest.json").read_text())
    m["config"]["top"] = 5  # as a run with other settings would have left it
    (cache/"manifest.json").write_text(json.dumps(m))
    r = run_hanorec(*summarize, env=ENV)  # its records were made otherwise: refused, with how to remove it
    assert r.returncode == 2 and "config.top: 5 on disk, 3 now" in r.stderr and f"delete {cache}" in r.stderr, r.stderr
    (cache/"users.jsonl").unlink()  # ... but a cache with no record holds nothing to protect
    r = run_hanorec(*summarize, env=ENV)
    assert r.returncode == 0 and "computed now, 0 reused" in r.stdout, r.stdout + r.stderr
    assert json.loads((cache/"manifest.json").read_text())["config"]["top"] == 3


@pytest.mark.parametrize("history", ["0", "-3"])
def test_models_check_refuses_a_history_below_1(data, home, capsys, history):
    _refused(capsys, ["models", "check", data, "--history", history], f"--history {history} is below 1", "pass --history 1 or more")
    assert not home.exists()


@pytest.mark.parametrize("uses", ["", " , "])
def test_env_check_naming_no_use_is_refused(capsys, uses):
    _refused(capsys, ["env", "--check", uses], f"--check {uses!r} names no use", "name a use: all, or comma-separated from")
    r = run_hanorec("env", "--check", uses, env=ENV)
    assert r.returncode == 2 and r.stdout == "", r.stdout  # not the whole environment report


@pytest.mark.parametrize("words,glued", [
    (["data", "=", "{data}"], "data={data}"),
    (["data", "={data}"], "data={data}"),
    (["data=", "{data}"], "data={data}"),
    (["model=seqrec", "optim.max_steps", "=", "3"], "optim.max_steps=3"),
])
def test_train_settings_with_spaces_around_the_equals_sign_are_refused(data, tmp_path, capsys, words, glued):
    out = tmp_path/"run"
    _refused(capsys, ["train", *[w.format(data=data) for w in words], f"out={out}"], "has spaces around '='",
             f"hint: write settings as key=value without spaces: {glued.format(data=data)}")
    assert not out.exists()


@pytest.mark.parametrize("source,guess", [("Synthetic", "synthetic"), ("SYNTHETIC", "synthetic"), ("movielens_small", "movielens-small")])
def test_data_prepare_checks_the_source_name_first(tmp_path, capsys, source, guess):
    out = tmp_path/"x"
    _refused(capsys, ["data", "prepare", source, "--users", 40, "--out", out], f"unknown data source {source!r}; did you mean {guess}?", "known sources:")
    assert not out.exists()


def test_data_prepare_guesses_nothing_for_a_name_unlike_any_source(tmp_path, capsys):
    err = _refused(capsys, ["data", "prepare", "netflix", "--out", tmp_path/"x"], "unknown data source 'netflix'")
    assert "did you mean" not in err
