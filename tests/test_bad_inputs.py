"""The bad-input corpus: every kind of bad input a loader or the image room meets, built by code, with its exact answer.

The promise for each: either a `HanorecError` naming the file and line (or the item) and what to do, or the line
skipped, counted in stats.json and written to rejects.jsonl with its reason, and the rest of the data read right.
Never a traceback, never silently changed data.
"""
import json, os, re, shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hanorec.core import HanorecError, read_manifest, write_manifest
from hanorec.data import load_prepared, prepare
from hanorec.sources import BadInputError, get_loader, iter_lines

T = 978_300_000  # seconds: December 2000
TM = 1_600_000_000  # seconds: September 2020

# ---------------------------------------------------------------------------------------------- the sources, as files
# Three users; after any one of user 1's lines is lost, user 1 still has 3 interactions (leave-one-out's minimum).
ML_MOVIES = ["1::Amélie (2001)::Comedy|Romance", "2::Heat (1995)::Action", "3::Up (2009)::Animation",
             "4::Alien (1979)::Horror", "5::Brazil (1985)::Drama"]
ML_RATINGS = [f"{u}::{i}::{r}::{T + 10*k}" for k, (u, i, r) in enumerate(
    [(1, 1, 5), (1, 2, 3), (1, 3, 4), (1, 4, 2), (2, 1, 4), (2, 2, 5), (2, 3, 2), (3, 3, 4), (3, 4, 5), (3, 5, 1)])]


def _lines(lines, replace:dict|None=None, append=()):
    out = list(lines)
    for n, text in (replace or {}).items(): out[n - 1] = text
    return out + list(append)


def movielens(ratings=None, movies=None, movies_bytes=None, ratings_bytes=None):
    "A MovieLens-1M folder builder: ratings.dat and movies.dat (Latin-1, as GroupLens ships them)."
    def build(tmp:Path):
        d = tmp/"ml-1m"; d.mkdir()
        (d/"movies.dat").write_bytes(movies_bytes if movies_bytes is not None else ("\n".join(movies or ML_MOVIES) + "\n").encode("latin-1"))
        (d/"ratings.dat").write_bytes(ratings_bytes if ratings_bytes is not None else ("\n".join(ratings or ML_RATINGS) + "\n").encode("latin-1"))
        return "movielens-1m", dict(path=d)
    return build


AZ_META = [{"parent_asin": f"B{i}", "title": f"Toy {i}", "main_category": "Toys", "categories": []} for i in range(1, 6)]
AZ_REVIEWS = [{"rating": float(r), "parent_asin": f"B{i}", "user_id": f"U{u}", "timestamp": (TM + 10*k)*1000 + 123}
              for k, (u, i, r) in enumerate([(1, 1, 5), (1, 2, 3), (1, 3, 4), (1, 4, 2), (2, 1, 4), (2, 2, 5), (2, 3, 2),
                                             (3, 3, 4), (3, 4, 5), (3, 5, 1)])]


def amazon23(line:int|None=None, text:str|None=None, append=(), reviews_bytes=None, meta_text=None, **change):
    "An Amazon-2023 folder builder: review `line` changed by `change` (or replaced by raw `text`), `append` added."
    def build(tmp:Path):
        d = tmp/"az"; d.mkdir()
        recs = [dict(r) for r in AZ_REVIEWS]
        lines = [json.dumps(r) for r in recs]
        if line is not None:
            if text is not None: lines[line - 1] = text
            else:
                rec = recs[line - 1]
                for k, v in change.items():
                    if v is _DROP: rec.pop(k)
                    else: rec[k] = v
                lines[line - 1] = json.dumps(rec)
        lines += list(append)
        (d/"Toys.jsonl").write_bytes(reviews_bytes if reviews_bytes is not None else ("\n".join(lines) + "\n").encode())
        (d/"meta_Toys.jsonl").write_text(meta_text if meta_text is not None else "\n".join(json.dumps(m) for m in AZ_META) + "\n")
        return "amazon-2023", dict(path=d)
    return build


_DROP = object()


def amazon18(line:int, text:str):
    "An Amazon-2018 folder builder (2014-style Python-literal lines are allowed there) with review `line` replaced."
    def build(tmp:Path):
        d = tmp/"az18"; d.mkdir()
        lines = [json.dumps({"overall": r["rating"], "reviewerID": r["user_id"], "asin": r["parent_asin"],
                             "unixReviewTime": r["timestamp"]//1000}) for r in AZ_REVIEWS]
        lines[line - 1] = text
        (d/"Toys.json").write_text("\n".join(lines) + "\n")
        (d/"meta_Toys.json").write_text("\n".join(repr({"asin": m["parent_asin"], "title": m["title"]}) for m in AZ_META) + "\n")
        return "amazon-2018", dict(path=d)
    return build


ML_PAIRS = [(1, 1, TM), (1, 2, TM + 100), (1, 3, TM + 200), (1, 4, TM + 300), (2, 1, TM), (2, 2, TM + 5), (2, 3, TM + 9),
            (3, 3, TM), (3, 4, TM + 1), (3, 5, TM + 2)]


def microlens(replace:dict|None=None, titles:str|None=None):
    "A MicroLens folder builder: pairs.csv with timestamps in seconds (lines counted with the header as line 1)."
    def build(tmp:Path):
        d = tmp/"mlens"; d.mkdir()
        lines = ["user,item,timestamp"] + [f"{u},{i},{t}" for u, i, t in ML_PAIRS]
        for n, text in (replace or {}).items(): lines[n - 1] = text
        (d/"MicroLens-50k_pairs.csv").write_text("\n".join(lines) + "\n")
        (d/"MicroLens-50k_titles.csv").write_text(titles if titles is not None else "item,title\n" + "".join(f"{i},Clip {i}\n" for i in range(1, 6)))
        return "microlens", dict(path=d)
    return build


def _prepare(tmp:Path, source:str, kw:dict, **more) -> tuple[dict, list[dict], Path]:
    out = tmp/"prepared"
    st = prepare(source, out, min_user=1, min_item=1, candidates=2, with_images=False, **kw, **more)
    rejects = [json.loads(l) for l in (out/"rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    return st, rejects, out


def _sequences(out:Path) -> dict:
    inter = load_prepared(out).interactions
    return {u: list(zip(g.item_id, g.timestamp)) for u, g in inter.groupby("user_id")}

# ------------------------------------------------------------------------------------- lines skipped, counted, named
@dataclass
class Skip:
    id: str
    build: Callable
    file: str # the file the rejected line is in
    line: int
    reason: str
    user: str # whose kept sequence is checked
    items: list # that user's kept items, in order
    strict: bool = True # a malformed line: strict mode stops at it (duplicates and unknown items are always skipped)


SKIPS = [
    # MovieLens-1M, ratings.dat: numbers taken on their own
    Skip("ml1m-timestamp-over-int64", movielens(_lines(ML_RATINGS, {2: "1::2::3::9223372036854775808"})),
         "ratings.dat", 2, "Timestamp is in the future", "1", ["1", "3", "4"]),
    Skip("ml1m-timestamp-far-over-int64", movielens(_lines(ML_RATINGS, {2: "1::2::3::" + "9"*40})),
         "ratings.dat", 2, "Timestamp is in the future", "1", ["1", "3", "4"]),
    Skip("ml1m-timestamp-negative", movielens(_lines(ML_RATINGS, {2: "1::2::3::-5"})),
         "ratings.dat", 2, "Timestamp is negative", "1", ["1", "3", "4"]),
    Skip("ml1m-timestamp-far-future", movielens(_lines(ML_RATINGS, {3: "1::3::4::4102444800"})),
         "ratings.dat", 3, "Timestamp is in the future", "1", ["1", "2", "4"]),
    Skip("ml1m-timestamp-fraction", movielens(_lines(ML_RATINGS, {2: f"1::2::3::{T}.5"})),
         "ratings.dat", 2, "Timestamp is not an integer", "1", ["1", "3", "4"]),
    Skip("ml1m-rating-nan", movielens(_lines(ML_RATINGS, {2: f"1::2::nan::{T + 10}"})),
         "ratings.dat", 2, "Rating is not a finite number", "1", ["1", "3", "4"]),
    Skip("ml1m-rating-inf", movielens(_lines(ML_RATINGS, {2: f"1::2::inf::{T + 10}"})),
         "ratings.dat", 2, "Rating is not a finite number", "1", ["1", "3", "4"]),
    Skip("ml1m-rating-negative", movielens(_lines(ML_RATINGS, {2: f"1::2::-3::{T + 10}"})),
         "ratings.dat", 2, "Rating is negative", "1", ["1", "3", "4"]),
    Skip("ml1m-rating-word", movielens(_lines(ML_RATINGS, {2: f"1::2::five::{T + 10}"})),
         "ratings.dat", 2, "Rating is not a number", "1", ["1", "3", "4"]),
    Skip("ml1m-user-id-word", movielens(_lines(ML_RATINGS, {2: f"one::2::3::{T + 10}"})),
         "ratings.dat", 2, "UserID is not an integer", "1", ["1", "3", "4"]),
    Skip("ml1m-field-missing", movielens(_lines(ML_RATINGS, {2: "1::2::3"})),
         "ratings.dat", 2, "expected 4 fields separated by '::'", "1", ["1", "3", "4"]),
    Skip("ml1m-duplicate-interaction", movielens(_lines(ML_RATINGS, append=[ML_RATINGS[1]])),
         "ratings.dat", 11, "duplicate interaction", "1", ["1", "2", "3", "4"], strict=False),
    Skip("ml1m-unknown-item", movielens(_lines(ML_RATINGS, append=[f"1::99::4::{T + 500}"])),
         "ratings.dat", 11, "item not in the items file", "1", ["1", "2", "3", "4"], strict=False),
    Skip("ml1m-movie-id-word", movielens(movies=_lines(ML_MOVIES, append=["six::Ghost (1990)::Drama"])),
         "movies.dat", 6, "MovieID is not an integer", "1", ["1", "2", "3", "4"]),
    # Amazon 2023, JSON lines
    Skip("az23-rating-true", amazon23(2, rating=True), "Toys.jsonl", 2, "rating is not a number", "U1", ["B1", "B3", "B4"]),
    Skip("az23-rating-list", amazon23(2, rating=[5]), "Toys.jsonl", 2, "rating is not a number", "U1", ["B1", "B3", "B4"]),
    Skip("az23-rating-word", amazon23(2, rating="five"), "Toys.jsonl", 2, "rating is not a number", "U1", ["B1", "B3", "B4"]),
    Skip("az23-rating-nan-string", amazon23(2, rating="nan"), "Toys.jsonl", 2, "rating is not a finite number", "U1", ["B1", "B3", "B4"]),
    Skip("az23-rating-negative", amazon23(2, rating=-3), "Toys.jsonl", 2, "rating is negative", "U1", ["B1", "B3", "B4"]),
    Skip("az23-timestamp-true", amazon23(2, timestamp=True), "Toys.jsonl", 2, "timestamp is not an integer", "U1", ["B1", "B3", "B4"]),
    Skip("az23-timestamp-over-uint64", amazon23(2, timestamp=99999999999999999999), "Toys.jsonl", 2, "timestamp is in the future", "U1", ["B1", "B3", "B4"]),
    Skip("az23-timestamp-uint64", amazon23(2, timestamp=18446744073709551615), "Toys.jsonl", 2, "timestamp is in the future", "U1", ["B1", "B3", "B4"]),
    Skip("az23-timestamp-negative", amazon23(2, timestamp=-1000), "Toys.jsonl", 2, "timestamp is negative", "U1", ["B1", "B3", "B4"]),
    Skip("az23-timestamp-word", amazon23(2, timestamp="yesterday"), "Toys.jsonl", 2, "timestamp is not an integer", "U1", ["B1", "B3", "B4"]),
    Skip("az23-user-id-list", amazon23(2, user_id=["U1"]), "Toys.jsonl", 2, "user_id is not a string or number", "U1", ["B1", "B3", "B4"]),
    Skip("az23-not-json", amazon23(2, text="{'rating': 5.0"), "Toys.jsonl", 2, "not valid JSON", "U1", ["B1", "B3", "B4"]),
    Skip("az23-duplicate-review", amazon23(append=[json.dumps(AZ_REVIEWS[2])]), "Toys.jsonl", 11, "duplicate interaction",
         "U1", ["B1", "B2", "B3", "B4"], strict=False),
    Skip("az23-review-of-unknown-item", amazon23(append=[json.dumps({**AZ_REVIEWS[0], "parent_asin": "B99"})]), "Toys.jsonl", 11,
         "item not in the items file", "U1", ["B1", "B2", "B3", "B4"], strict=False),
    Skip("az23-meta-id-object", amazon23(meta_text="\n".join(json.dumps(m) for m in AZ_META) + '\n{"parent_asin": {"id": "B6"}, "title": "x"}\n'),
         "meta_Toys.jsonl", 6, "parent_asin is not a string or number", "U1", ["B1", "B2", "B3", "B4"]),
    # Amazon 2018: Python-literal lines reach the numbers with Python's unbounded ints
    Skip("az18-timestamp-over-int64-literal", amazon18(2, f"{{'overall': 3.0, 'reviewerID': 'U1', 'asin': 'B2', 'unixReviewTime': {2**70}}}"),
         "Toys.json", 2, "unixReviewTime is in the future", "U1", ["B1", "B3", "B4"]),
    Skip("az18-rating-too-large-for-float", amazon18(2, f"{{'overall': {10**400}, 'reviewerID': 'U1', 'asin': 'B2', 'unixReviewTime': {TM + 10}}}"),
         "Toys.json", 2, "overall is not a finite number", "U1", ["B1", "B3", "B4"]),
    Skip("az18-rating-bool-literal", amazon18(2, f"{{'overall': True, 'reviewerID': 'U1', 'asin': 'B2', 'unixReviewTime': {TM + 10}}}"),
         "Toys.json", 2, "overall is not a number", "U1", ["B1", "B3", "B4"]),
    # MicroLens pairs
    Skip("microlens-timestamp-negative", microlens({3: "1,2,-7"}), "MicroLens-50k_pairs.csv", 3, "timestamp is negative", "1", ["1", "3", "4"]),
    Skip("microlens-timestamp-future", microlens({3: "1,2,99999999999999"}), "MicroLens-50k_pairs.csv", 3, "timestamp is in the future",
         "1", ["1", "3", "4"]),
]


@pytest.mark.parametrize("case", SKIPS, ids=lambda c: c.id)
def test_bad_line_is_skipped_counted_and_named(tmp_path, case):
    source, kw = case.build(tmp_path)
    st, rejects, out = _prepare(tmp_path, source, kw)
    assert [(Path(r["file"]).name, r["line"], r["reason"]) for r in rejects] == [(case.file, case.line, case.reason)]
    assert st["lines_skipped"] == 1 and st["skipped_by_reason"] == {case.reason: 1}
    assert [i for i, _ in _sequences(out)[case.user]] == case.items  # the rest read right, in time order
    if case.strict:
        with pytest.raises(BadInputError, match=re.escape(f"{case.file}:{case.line}: {case.reason}")):
            get_loader(source).load(strict=True, **kw)


def test_duplicate_and_unknown_item_rejects_say_which_row_and_where_first(tmp_path):
    source, kw = movielens(_lines(ML_RATINGS, append=[ML_RATINGS[1], f"1::99::4::{T + 500}"]))(tmp_path)
    st, rejects, _ = _prepare(tmp_path, source, kw)
    assert [(r["line"], r["reason"], r["detail"]) for r in rejects] == [
        (11, "duplicate interaction", f"user '1', item '2', timestamp {T + 10}, first on line 2"),
        (12, "item not in the items file", "item '99'")]
    assert (st["duplicates_removed"], st["interactions_without_item"]) == (1, 1)

# ----------------------------------------------------------------------------------- read right, nothing rejected
def _ml1m_titles_right(tmp, st, rejects, out):
    assert load_prepared(out).items.set_index("item_id").title["1"] == "Amélie"


def _user1_in_time_order(expected_ts):
    def check(tmp, st, rejects, out):
        assert [t for _, t in _sequences(out)["1"]] == expected_ts
    return check


def _u1_rating_nan(tmp, st, rejects, out):
    inter = load_prepared(out).interactions
    r = inter[(inter.user_id == "U1") & (inter.item_id == "B2")].rating
    assert len(r) == 1 and np.isnan(r.iloc[0])  # absent is NaN, as the schema allows; not 0, not dropped


@dataclass
class ReadRight:
    id: str
    build: Callable
    check: Callable


READ_RIGHT = [
    ReadRight("ml1m-movies-bom-latin1", movielens(movies_bytes=b"\xef\xbb\xbf" + ("\n".join(ML_MOVIES) + "\n").encode("latin-1")),
              _ml1m_titles_right),
    ReadRight("ml1m-movies-written-as-utf8", movielens(movies_bytes=("\n".join(ML_MOVIES) + "\n").encode("utf-8")), _ml1m_titles_right),
    ReadRight("ml1m-ratings-bom", movielens(ratings_bytes=b"\xef\xbb\xbf" + ("\n".join(ML_RATINGS) + "\n").encode()),
              _user1_in_time_order([T, T + 10, T + 20, T + 30])),
    ReadRight("ml1m-one-timestamp-in-ms", movielens(_lines(ML_RATINGS, {3: f"1::3::4::{(T + 20)*1000}"})),
              _user1_in_time_order([T, T + 10, T + 20, T + 30])),
    ReadRight("microlens-one-row-in-ms", microlens({3: f"1,2,{(TM + 100)*1000}"}), _user1_in_time_order([TM, TM + 100, TM + 200, TM + 300])),
    ReadRight("az23-one-timestamp-in-seconds", amazon23(2, timestamp=TM + 10), lambda *a: _user1_az(*a)),
    ReadRight("az23-rating-absent", amazon23(2, rating=_DROP), _u1_rating_nan),
]


def _user1_az(tmp, st, rejects, out):
    assert [t for _, t in _sequences(out)["U1"]] == [TM, TM + 10, TM + 20, TM + 30]


@pytest.mark.parametrize("case", READ_RIGHT, ids=lambda c: c.id)
def test_odd_but_honest_input_is_read_right(tmp_path, case):
    source, kw = case.build(tmp_path)
    st, rejects, out = _prepare(tmp_path, source, kw)
    assert rejects == [] and st["lines_skipped"] == 0
    case.check(tmp_path, st, rejects, out)

# ------------------------------------------------------------------------------------------- refused with a message
@dataclass
class Refuse:
    id: str
    build: Callable # tmp -> a callable that must raise
    says: list # what the message must name
    hint: str # what the hint must say


def _loading(builder, **more):
    def build(tmp):
        source, kw = builder(tmp)
        return lambda: _prepare(tmp, source, {**kw, **more})
    return build


def _explicit_folder(tmp):
    source, kw = movielens()(tmp)
    d = kw["path"]
    return lambda: get_loader(source).load(reviews=d, meta=d/"movies.dat")


def _truncated_gz(tmp):
    import gzip
    source, kw = movielens()(tmp)
    d = kw["path"]
    data = gzip.compress(("\n".join(ML_RATINGS*200) + "\n").encode())
    (d/"ratings.dat").unlink(); (d/"ratings.dat.gz").write_bytes(data[:len(data)//2])
    return lambda: get_loader(source).load(path=d)


def _damaged(kind):
    "A prepared folder damaged after the fact: truncated (size differs), or changed in place (same size)."
    def build(tmp):
        source, kw = movielens()(tmp)
        _, _, out = _prepare(tmp, source, kw)
        p = out/"interactions.parquet"
        if kind == "truncated": p.write_bytes(p.read_bytes()[:-64]); return lambda: load_prepared(out)
        if kind == "truncated-old-manifest":  # a folder prepared before sizes were recorded: the read itself names it
            m = read_manifest(out); m.config.pop("output_bytes")
            p.write_bytes(p.read_bytes()[:-64]); write_manifest(out, m)
            return lambda: load_prepared(out)
        b = bytearray(p.read_bytes()); b[len(b)//2] ^= 0xFF; p.write_bytes(bytes(b))
        return lambda: load_prepared(out, verify=True)
    return build


REFUSALS = [
    Refuse("ml1m-ratings-empty", _loading(movielens(ratings_bytes=b"")), ["ratings.dat holds no ratings: it is empty"], "check the path"),
    Refuse("ml1m-ratings-blank-lines", _loading(movielens(ratings_bytes=b"\n\n\n")), ["ratings.dat holds no ratings: it has no data lines"],
           "check the path"),
    Refuse("ml1m-movies-empty", _loading(movielens(movies_bytes=b"")), ["movies.dat holds no movies"], "check the path"),
    Refuse("ml1m-ratings-all-bad", _loading(movielens(ratings=["a::b::c::d", "1::2"])),
           ["no interactions were read from", "ratings.dat", "all 2 of its lines were skipped", "line 1"], "right file"),
    Refuse("ml1m-ratings-a-folder", _explicit_folder, ["reviews file", "is a folder, not a file"], "name the file itself"),
    Refuse("ml1m-ratings-truncated-gz", _truncated_gz, ["ratings.dat.gz: the compressed file is truncated or corrupt after line"], "gzip -t"),
    Refuse("az23-reviews-empty", _loading(amazon23(reviews_bytes=b"")), ["Toys.jsonl holds no reviews: it is empty"], "check the path"),
    Refuse("az23-meta-empty", _loading(amazon23(meta_text="")), ["meta_Toys.jsonl holds no items: it is empty"], "check the path"),
    Refuse("microlens-titles-empty", _loading(microlens(titles="")), ["MicroLens-50k_titles.csv is empty"], "item,title"),
    Refuse("microlens-titles-header-only", _loading(microlens(titles="item,title\n")), ["MicroLens-50k_titles.csv holds no titles"],
           "check the path"),
    Refuse("prepared-parquet-truncated", _damaged("truncated"), ["interactions.parquet is damaged: it has", "when it was prepared"],
           "prepare it again"),
    Refuse("prepared-parquet-truncated-old-manifest", _damaged("truncated-old-manifest"),
           ["interactions.parquet is damaged: it does not read as Parquet"], "prepare it again"),
    Refuse("prepared-parquet-changed-same-size", _damaged("flipped"), ["interactions.parquet has changed since it was prepared"],
           "prepare it again"),
]


@pytest.mark.parametrize("case", REFUSALS, ids=lambda c: c.id)
def test_bad_input_is_refused_with_what_where_and_what_to_do(tmp_path, case):
    run = case.build(tmp_path)
    with pytest.raises(HanorecError) as e:
        run()
    for s in case.says: assert s in str(e.value), (s, str(e.value))
    assert case.hint in e.value.hint


def test_unreadable_file_is_named_not_a_permission_traceback(tmp_path):
    source, kw = movielens()(tmp_path)
    ratings = kw["path"]/"ratings.dat"
    ratings.chmod(0)
    try:
        if not os.access(ratings, os.R_OK):  # an ordinary user: the real permission error, through prepare
            with pytest.raises(HanorecError, match=r"ratings\.dat cannot be read \(Permission denied\)") as e:
                _prepare(tmp_path, source, kw)
        else:  # root reads anything: a folder in the file's place fails the same open() with another OSError
            ratings.chmod(0o644); ratings.unlink(); ratings.mkdir()
            with pytest.raises(HanorecError, match=r"ratings\.dat cannot be read \(Is a directory\)") as e:
                list(iter_lines(ratings))
        assert "ls -l" in e.value.hint
    finally:
        if ratings.is_file(): ratings.chmod(0o644)

# ------------------------------------------------------------------------------------------------- the image room
SIZE = (64, 96)  # the cache frame; the test pictures are this size, so nothing is scaled


def _picture() -> np.ndarray:
    "The intended picture: four flat bands, dark to light, left to right, with a red block at the top left."
    a = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    for k, v in enumerate((20, 90, 160, 230)): a[:, 16*k:16*(k + 1)] = v
    a[:24, :16] = (200, 30, 30)
    return a


def _grey() -> np.ndarray: return _picture()[..., 1]  # the green channel: the same four bands, the block dark


def _save_mode(mode:str, path:Path) -> Path:
    "The picture stored in `mode`; returns the file."
    g = _grey()
    if mode == "I;16": im = Image.fromarray(g.astype(np.uint16)*257); path = path.with_suffix(".png")
    elif mode == "I": im = Image.fromarray(g.astype(np.int32)*257); path = path.with_suffix(".tif")
    elif mode == "I-wide": im = Image.fromarray(g.astype(np.int32)*1_000_000 - 5_000_000); path = path.with_suffix(".tif")
    elif mode == "F": im = Image.fromarray(g.astype(np.float32)/255); path = path.with_suffix(".tif")
    elif mode == "LA": im = Image.fromarray(np.dstack([g, np.full_like(g, 255)]), "LA"); path = path.with_suffix(".png")
    elif mode == "1": im = Image.fromarray(g > 128).convert("1"); path = path.with_suffix(".png")
    elif mode == "CMYK": im = Image.fromarray(_picture()).convert("CMYK"); path = path.with_suffix(".tif")
    elif mode == "YCbCr": im = Image.fromarray(_picture()).convert("YCbCr"); path = path.with_suffix(".jpg")
    elif mode == "P-transparent":
        im = Image.fromarray(_picture()).quantize(8)
        im.info["transparency"] = 0; path = path.with_suffix(".png")
    elif mode == "RGBA-transparent":
        rgba = np.dstack([_picture(), np.full(_grey().shape, 255, np.uint8)]); rgba[:, :16, 3] = 0
        im = Image.fromarray(rgba, "RGBA"); path = path.with_suffix(".png")
    elif mode == "EXIF-rotated":  # stored on its side, with the EXIF orientation that turns it upright
        im = Image.fromarray(np.rot90(_picture(), 1).copy())  # turned a quarter to the left ...
        ex = Image.Exif(); ex[0x0112] = 6  # ... and tagged: rotate 90 clockwise to show
        im.save(path.with_suffix(".jpg"), exif=ex, quality=95); return path.with_suffix(".jpg")
    else: raise ValueError(mode)
    im.save(path)
    return path


def _expected(mode:str) -> np.ndarray:
    g = _grey()
    if mode in ("I;16", "I", "F", "LA"): return np.dstack([g]*3)
    if mode == "I-wide":  # stretched from its minimum to its maximum
        lo, hi = g.min(), g.max()
        return np.dstack([np.rint((g.astype(float) - lo)*255/(hi - lo)).astype(np.uint8)]*3)
    if mode == "1": return np.dstack([np.where(g > 128, 255, 0).astype(np.uint8)]*3)
    if mode == "RGBA-transparent": a = _picture(); a[:, :16] = 255; return a  # laid on white
    return _picture()


def _p_transparent_expected(path:Path) -> np.ndarray:
    "The palette picture shows the palette's colours, with index 0 laid on white."
    with Image.open(path) as im: idx = np.asarray(im); pal = np.asarray(im.convert("RGB"))
    out = pal.copy(); out[idx == 0] = 255
    return out


IMAGE_MODES = ["I;16", "I", "I-wide", "F", "LA", "1", "CMYK", "YCbCr", "P-transparent", "RGBA-transparent", "EXIF-rotated"]


@pytest.mark.parametrize("mode", IMAGE_MODES)
def test_every_image_mode_is_cached_as_what_it_shows(tmp_path, mode):
    from hanorec.images import cache_item_images, load_item_image
    src = tmp_path/"src"; src.mkdir()
    path = _save_mode(mode, src/"item")
    items = pd.DataFrame({"item_id": ["7"], "title": ["x"], "year": [None], "categories": [[]], "image_source": [path.name]})
    out, counts = cache_item_images(items, tmp_path/"ds", images_dir=src, size=SIZE)
    assert out.image_status.tolist() == ["ok"] and counts["items_with_image"] == 1
    got = np.asarray(load_item_image(tmp_path/"ds", out.image[0])).astype(int)
    want = (_p_transparent_expected(path) if mode == "P-transparent" else _expected(mode)).astype(int)
    inner = np.ones(want.shape[:2], bool)  # band edges blur a little in JPEG: compare each band's inside
    for x in (0, 16, 32, 48, 63): inner[:, max(0, x - 2):x + 3] = False
    inner[22:27] = False
    err = np.abs(got - want)[inner]
    assert err.mean() < 4 and np.percentile(err, 99) < 24, (mode, err.mean(), np.percentile(err, 99))


def test_corrupt_jpg_beside_a_good_png_uses_the_png(tmp_path):
    source, kw = movielens()(tmp_path)
    images = tmp_path/"posters"; images.mkdir()
    (images/"1.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    Image.fromarray(_picture()).save(images/"1.png")
    out = tmp_path/"prepared"
    st = prepare(source, out, min_user=1, min_item=1, candidates=2, image_size=SIZE, images=images, **kw)
    items = load_prepared(out).items.set_index("item_id")
    assert items.image_source["1"] == "1.png" and items.image_status["1"] == "ok"
    assert st["items_with_image"] == 1 and st["images_unreadable"] == 0 and st["images_missing"] == 4


def test_corrupt_image_alone_is_counted_unreadable_with_its_reason(tmp_path):
    from hanorec.images import cache_item_images
    src = tmp_path/"src"; src.mkdir()
    (src/"7.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00"*40)
    items = pd.DataFrame({"item_id": ["7"], "title": ["x"], "year": [None], "categories": [[]], "image_source": ["7.png"]})
    out, counts = cache_item_images(items, tmp_path/"ds", images_dir=src, size=SIZE)
    assert out.image_status.tolist() == ["unreadable"] and counts["images_unreadable"] == 1
    index = json.loads((tmp_path/"ds"/"images"/"index.json").read_text())["items"]
    assert index["7"]["note"].startswith("image '7.png' is unreadable")
