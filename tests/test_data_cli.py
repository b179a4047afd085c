"`hanorec data` as a newcomer and as a researcher with a real dump meet it."
import json

import pandas as pd
import pytest

from conftest import run_hanorec
from hanorec.data import load_prepared, to_hf_dataset
from hanorec.sources import write_sample_files


@pytest.fixture(scope="session")
def movielens_small(tmp_path_factory):
    "The embedded default, prepared once by the command a newcomer runs first."
    out = tmp_path_factory.mktemp("data") / "movielens-small"
    r = run_hanorec("data", "prepare", "movielens-small", "--out", out)
    assert r.returncode == 0, r.stderr
    return out, r


def test_movielens_small_prepares_with_rendered_posters(movielens_small):
    out, r = movielens_small
    stats = json.loads((out / "stats.json").read_text())
    for key in ("users", "items", "interactions", "items_with_image", "images_rendered", "images_missing",
                "images_unreadable", "lines_read", "lines_skipped", "skipped_by_reason"):
        assert key in stats, key
    assert stats["lines_read"] == 100_004 and stats["users"] == 671
    assert stats["images_rendered"] == stats["items"] and stats["items_with_image"] == 0
    assert f"{stats['users']:,}" in r.stdout
    items = pd.read_parquet(out / "items.parquet")
    assert items.image_rendered.all() and (items.image_status == "rendered").all()
    assert all((out / p).is_file() for p in items.image.head(50))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "prepared-dataset" and manifest["outputs"]


def test_fixed_candidates_hold_the_target_and_never_a_seen_item(movielens_small):
    out, _ = movielens_small
    ds = load_prepared(out)
    test = pd.read_parquet(out / "candidates" / "test.parquet")
    seen = ds.interactions.groupby("user_id").item_id.agg(set)
    for row in test.head(200).itertuples():
        cands = list(row.candidates)
        assert len(cands) == 20 and cands[row.target_index] == row.target
        assert not (set(cands) - {row.target}) & seen[row.user_id]
    # reading again never redraws
    assert pd.read_parquet(out / "candidates" / "test.parquet").equals(test)


def test_hf_dataset_dict(movielens_small):
    out, _ = movielens_small
    dd = to_hf_dataset(out)
    assert set(dd) == {"train", "validation", "test"}
    assert dd["test"].num_rows == 671 and "candidates" in dd["test"].column_names


def test_stats_command_prints_table_and_writes_plots(movielens_small, tmp_path):
    out, _ = movielens_small
    r = run_hanorec("data", "stats", out, "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    assert "users" in r.stdout and "671" in r.stdout
    html = sorted(tmp_path.glob("*.html"))
    assert len(html) >= 2
    assert all("plotly" in p.read_text()[:200_000].lower() for p in html)


def _with_bad_line(tmp_path):
    files = write_sample_files("movielens-1m", tmp_path / "ml1m", users=30, items=40, per_user=10)
    lines = files["reviews"].read_text().splitlines()
    lines.insert(6, "12::not-a-number::5")  # line 7: three fields, a non-numeric movie id
    files["reviews"].write_text("\n".join(lines) + "\n")
    return files


def test_malformed_line_is_skipped_counted_and_shown(tmp_path):
    files = _with_bad_line(tmp_path)
    out = tmp_path / "prepared"
    r = run_hanorec("data", "prepare", "movielens-1m", "--path", files["path"], "--out", out, "--min-user", "2", "--min-item", "2")
    assert r.returncode == 0, r.stderr
    assert "ratings.dat:7" in r.stderr + r.stdout
    rejects = [json.loads(l) for l in (out / "rejects.jsonl").read_text().splitlines()]
    assert [(x["line"], x["file"].endswith("ratings.dat")) for x in rejects] == [(7, True)]
    assert json.loads((out / "stats.json").read_text())["lines_skipped"] == 1


def test_strict_stops_with_exit_2_naming_file_and_line(tmp_path):
    files = _with_bad_line(tmp_path)
    out = tmp_path / "prepared"
    r = run_hanorec("data", "prepare", "movielens-1m", "--path", files["path"], "--out", out, "--strict")
    assert r.returncode == 2
    assert "ratings.dat:7" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()  # nothing half-written


@pytest.mark.parametrize("args, expected", [
    (["no-such-source"], "no-such-source"),
    (["movielens-1m", "--path", "/nonexistent/folder"], "/nonexistent/folder"),
    (["movielens-small", "--min-user", "100000"], "min"),
])
def test_bad_requests_say_what_and_exit_2(tmp_path, args, expected):
    r = run_hanorec("data", "prepare", *args, "--out", tmp_path / "out")
    assert r.returncode == 2, r.stdout
    assert expected in r.stderr and "hint:" in r.stderr and "Traceback" not in r.stderr
