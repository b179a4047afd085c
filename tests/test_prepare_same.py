"""`prepare` on DuckDB writes the prepared folder byte for byte as the in-memory code before it did, in chunks or not.

`prepared_hashes.json` holds the SHA-256 of every file `prepare` wrote from the fixtures below at main fe971f4, when it
read whole dumps into pandas (`rejects.jsonl` with file names instead of paths; the manifest, which holds paths, left
out). The fixtures carry the lines that exercise the rejects: a duplicate review, a review of an unknown item, a line
that is no JSON, a rating "five", a timestamp in seconds among milliseconds, a duplicate item id, a short line.
"""
import hashlib, json, re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hanorec.data as data
import hanorec.sources as sources
from hanorec.data import _TableFile, prepare
from hanorec.sources import write_sample_files

RECORDED = json.loads((Path(__file__).parent/"prepared_hashes.json").read_text())


def _digest(out:Path) -> dict:
    h = {}
    for p in sorted(out.rglob("*")):
        if not p.is_file() or p.name == "manifest.json": continue
        b = p.read_bytes()
        if p.name == "rejects.jsonl":
            rows = [json.loads(l) for l in b.decode().splitlines()]
            b = json.dumps([{**r, "file": Path(r["file"]).name} for r in rows], ensure_ascii=False).encode()
        h[str(p.relative_to(out))] = hashlib.sha256(b).hexdigest()
    return h


def _append(path, text):
    with open(path, "a", encoding="utf-8") as f: f.write(text)


def _fixtures(tmp:Path) -> dict:
    "case -> (source, prepare's keywords), the files written into `tmp` as they were when the hashes were recorded."
    cases = {}
    f = write_sample_files("movielens-1m", tmp/"ml1m", users=40, items=60, per_user=10)
    first = f["reviews"].read_text().splitlines()[0]
    _append(f["reviews"], f"{first}\n1::2::5\n1::999::4::1000000000\n3::5::x::1000000001\n")
    cases["ml1m"] = ("movielens-1m", dict(path=f["path"], min_user=5, min_item=3, candidates=10))
    f = write_sample_files("amazon-2023", tmp/"az23", users=60, items=80, per_user=12)
    lines = f["reviews"].read_text().splitlines()
    _append(f["reviews"], lines[3] + "\n" + lines[10].replace('"parent_asin": "B', '"parent_asin": "Z') + "\n{not json\n"
            + re.sub(r'"rating": [0-9.]+', '"rating": "five"', lines[5]) + "\n" + re.sub(r'"timestamp": (\d+)\d\d\d', r'"timestamp": \1', lines[7]) + "\n")
    _append(f["meta"], f["meta"].read_text().splitlines()[2] + "\n")
    cases["az23"] = ("amazon-2023", dict(path=f["path"], min_user=3, min_item=2, candidates=8))
    cases["az23-rated"] = ("amazon-2023", dict(path=f["path"], min_user=2, min_item=2, candidates=5, min_rating=3, history=4, seed=7))
    for name, kw in [("az18-gz", dict(gz=True)), ("az18-lit", dict(python_literals=True))]:
        f = write_sample_files("amazon-2018", tmp/name, users=50, items=70, per_user=10, **kw)
        cases[name] = ("amazon-2018", dict(path=f["path"], min_user=3, min_item=2, candidates=5))
    for name, kw in [("mlens", {}), ("mlens-tsv", dict(tsv=True))]:
        f = write_sample_files("microlens", tmp/name, users=30, items=40, per_user=10, **kw)
        cases[name] = ("microlens", dict(path=f["path"], min_user=3, min_item=2, candidates=5))
    cases["movielens-small"] = ("movielens-small", {})
    cases["synthetic"] = ("synthetic", dict(options={"users": 60, "items": 50, "seed": 3}))
    return cases


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    return _fixtures(tmp_path_factory.mktemp("fixtures"))


def _prepared(fixtures, tmp:Path, case:str) -> dict:
    source, kw = fixtures[case]
    prepare(source, tmp/case, with_images=False, **kw)
    return _digest(tmp/case)


@pytest.mark.parametrize("case", list(RECORDED["cases"]))
def test_prepared_folder_is_byte_for_byte_what_the_in_memory_code_wrote(fixtures, tmp_path, case):
    versions = {"pyarrow": pa.__version__, "pandas": pd.__version__}
    if versions != RECORDED["versions"]:  # the files name their writer's version, and pandas' metadata its own
        pytest.skip(f"hashes recorded with {RECORDED['versions']}, this is {versions}: test_chunks_change_no_byte still compares")
    assert _prepared(fixtures, tmp_path, case) == RECORDED["cases"][case]


@pytest.mark.parametrize("case", ["ml1m", "az23", "az23-rated", "az18-lit", "mlens-tsv", "movielens-small"])
def test_chunks_change_no_byte(fixtures, tmp_path, monkeypatch, case):
    "Loaders reading 3 lines at a time and prepare writing 5 interactions at a time (7,000 for MovieLens): the same files."
    whole = _prepared(fixtures, tmp_path/"whole", case)
    monkeypatch.setattr(sources, "CHUNK_LINES", 3)
    monkeypatch.setattr(data, "CHUNK_ROWS", 7_000 if case == "movielens-small" else 5)
    assert _prepared(fixtures, tmp_path/"chunked", case) == whole


def test_table_file_writes_what_one_write_table_writes(tmp_path):
    "Row groups cut across uneven chunks, lists and nulls included: the bytes of `pq.write_table` of the whole table."
    rng = np.random.default_rng(0)
    n = 1_000
    lengths = rng.integers(0, 12, n)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    table = pa.table({"user_id": pa.array([f"u{k // 7}" for k in range(n)]),
                      "history": pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array([f"i{x}" for x in rng.integers(0, 300, offsets[-1])])),
                      "rating": pa.array(rng.random(n), mask=rng.random(n) < 0.1), "timestamp": pa.array(np.arange(n), pa.int64())})
    pq.write_table(table, tmp_path/"whole.parquet", row_group_size=128)
    f = _TableFile(tmp_path/"chunked.parquet", table.schema)
    f.ROWS = 128
    cut = [0, 3, 3, 200, 201, 640, 999, 1_000]
    for a, b in zip(cut, cut[1:]): f.write(table.slice(a, b - a))
    assert f.close() == n
    assert (tmp_path/"chunked.parquet").read_bytes() == (tmp_path/"whole.parquet").read_bytes()
    empty = _TableFile(tmp_path/"empty.parquet", table.schema)
    assert empty.close() == 0
    pq.write_table(table.slice(0, 0), tmp_path/"empty-whole.parquet")
    assert (tmp_path/"empty.parquet").read_bytes() == (tmp_path/"empty-whole.parquet").read_bytes()
