"""Which engine for `prepare`'s steps after reading: the measurement behind the table in nbs/12_data.ipynb.

The same task on the same interactions (Parquet: user_id, item_id, timestamp, rating, line; 20 per user, one item per
50, a long-tailed popularity, ids as long as Amazon 2023's): drop exact duplicates (the first kept), 5-core,
chronological leave-one-out (position by time, then input order; users with < 3 out), the sequences written as
Parquet in user and position order. Each engine runs in its own process on one thread; it prints wall time and the
process's peak resident memory. All three must give the same rows (checked by `check`).

    python scripts/compare_engines.py gen 4000000 /tmp/in4m.parquet
    python scripts/compare_engines.py run duckdb /tmp/in4m.parquet /tmp/out-duckdb.parquet   # or pandas, polars
    python scripts/compare_engines.py check /tmp/out-duckdb.parquet /tmp/out-pandas.parquet

pandas: hanorec's code before the engine (fe971f4), copied here. polars (not a hanorec dependency: `pip install
polars`) with its streaming engine, every step a `sink_parquet`. DuckDB with `memory_limit` 1GB and a spill folder.
"""
import json, os, resource, sys, tempfile, time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def gen(n:int, path:str, seed:int=0):
    items = max(100, n // 50)
    cdf = np.cumsum(1 / (np.arange(items) + 5.0)); cdf /= cdf[-1]
    rng = np.random.default_rng(seed)
    w, t0, u0, written = None, 1_600_000_000, 0, 0
    while written < n:
        per = rng.integers(10, 31, size=50_000)
        u = np.repeat(np.arange(u0, u0 + len(per)), per)[: n - written]
        u0 += len(per)
        m = len(u)
        ts = t0 + np.cumsum(rng.integers(1, 10_000, size=m)); t0 = int(ts[-1])
        t = pa.table({"user_id": pa.array([f"A{x:027d}" for x in u]), "item_id": pa.array([f"B{x:09d}" for x in np.searchsorted(cdf, rng.random(m))]),
                      "timestamp": ts, "rating": rng.integers(1, 6, size=m).astype(float), "line": np.arange(written + 1, written + m + 1)})
        w = w or pq.ParquetWriter(path, t.schema)
        w.write_table(t); written += m
    w.close()


def run_pandas(src, out):
    import pandas as pd
    inter = pd.read_parquet(src)
    inter = inter.assign(order=np.arange(len(inter), dtype=np.int64))
    inter = inter[~inter.duplicated(["user_id", "item_id", "timestamp"])]
    u, i = pd.factorize(inter.user_id)[0], pd.factorize(inter.item_id)[0]
    keep = np.ones(len(inter), bool)
    while True:
        new = keep & (np.bincount(u[keep], minlength=u.max() + 1)[u] >= 5) & (np.bincount(i[keep], minlength=i.max() + 1)[i] >= 5)
        if new.sum() == keep.sum(): break
        keep = new
    inter = inter[keep].reset_index(drop=True)
    ucode = pd.factorize(inter.user_id, sort=True)[0]
    order = np.lexsort((inter["order"].to_numpy(), inter.timestamp.to_numpy(), ucode))
    seq = inter.iloc[order].drop(columns=["order", "line"]).reset_index(drop=True)
    uc = ucode[order]
    n = np.bincount(uc)
    pos, length = np.arange(len(seq)) - np.concatenate([[0], np.cumsum(n)[:-1]])[uc], n[uc]
    seq = seq.assign(position=pos, split=np.where(pos == length - 1, "test", np.where(pos == length - 2, "validation", "train")))
    seq[length >= 3].to_parquet(out, index=False)


def run_duckdb(src, out, memory="1GB"):
    import duckdb
    work = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(out)))
    con = duckdb.connect(os.path.join(work, "e.duckdb"))
    con.execute(f"SET memory_limit='{memory}'; SET temp_directory='{work}/spill'; SET threads=1; SET preserve_insertion_order=false")
    con.execute(f"CREATE VIEW raw AS SELECT *, file_row_number AS ord FROM read_parquet('{src}', file_row_number=true)")
    con.execute("CREATE TABLE users AS SELECT user_id, (row_number() OVER (ORDER BY user_id) - 1)::INTEGER AS u FROM (SELECT DISTINCT user_id FROM raw)")
    con.execute("CREATE TABLE items AS SELECT item_id, (row_number() OVER (ORDER BY item_id) - 1)::INTEGER AS i FROM (SELECT DISTINCT item_id FROM raw)")
    con.execute("CREATE TABLE known AS SELECT u, i, timestamp, rating, ord FROM raw JOIN users USING (user_id) JOIN items USING (item_id)")
    con.execute("CREATE TABLE dup AS SELECT k.ord FROM known k JOIN (SELECT u, i, timestamp, min(ord) AS first FROM known "
                "GROUP BY u, i, timestamp HAVING count(*) > 1) g USING (u, i, timestamp) WHERE k.ord <> g.first")
    con.execute("CREATE TABLE core AS SELECT * FROM known ANTI JOIN dup USING (ord)")
    n = con.execute("SELECT count(*) FROM core").fetchall()[0][0]
    while True:
        con.execute("CREATE OR REPLACE TABLE nxt AS SELECT * FROM core WHERE u IN (SELECT u FROM core GROUP BY u HAVING count(*) >= 5) "
                    "AND i IN (SELECT i FROM core GROUP BY i HAVING count(*) >= 5)")
        m = con.execute("SELECT count(*) FROM nxt").fetchall()[0][0]
        if m == n: break
        con.execute("DROP TABLE core; ALTER TABLE nxt RENAME TO core"); n = m
    con.execute("""CREATE TABLE seq AS SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY u ORDER BY timestamp, ord) - 1 AS position,
                   count(*) OVER (PARTITION BY u) AS n FROM core) WHERE n >= 3""")
    reader = con.sql("SELECT users.user_id, items.item_id, timestamp, rating, position, "
                     "CASE WHEN position = n - 1 THEN 'test' WHEN position = n - 2 THEN 'validation' ELSE 'train' END AS split "
                     "FROM seq JOIN users USING (u) JOIN items USING (i) ORDER BY u, position").to_arrow_reader(500_000)
    with pq.ParquetWriter(out, reader.schema) as w:
        for b in reader: w.write_batch(b)


def run_polars(src, out):
    import polars as pl
    work = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(out)))
    cur = os.path.join(work, "r0.parquet")
    pl.scan_parquet(src).with_row_index("ord").unique(subset=["user_id", "item_id", "timestamp"], keep="first").sink_parquet(cur, engine="streaming")
    n, r = pl.scan_parquet(cur).select(pl.len()).collect().item(), 0
    while True:
        lf = pl.scan_parquet(cur)
        ok_u = lf.group_by("user_id").agg(pl.len()).filter(pl.col("len") >= 5).select("user_id")
        ok_i = lf.group_by("item_id").agg(pl.len()).filter(pl.col("len") >= 5).select("item_id")
        r += 1; nxt = os.path.join(work, f"r{r}.parquet")
        lf.join(ok_u, on="user_id", how="semi").join(ok_i, on="item_id", how="semi").sink_parquet(nxt, engine="streaming")
        m, cur = pl.scan_parquet(nxt).select(pl.len()).collect().item(), nxt
        if m == n: break
        n = m
    lf = pl.scan_parquet(cur).sort(["user_id", "timestamp", "ord"])
    lf = lf.with_columns(position=pl.int_range(pl.len()).over("user_id"), n=pl.len().over("user_id")).filter(pl.col("n") >= 3)
    lf = lf.with_columns(split=pl.when(pl.col("position") == pl.col("n") - 1).then(pl.lit("test"))
                         .when(pl.col("position") == pl.col("n") - 2).then(pl.lit("validation")).otherwise(pl.lit("train")))
    lf.select("user_id", "item_id", "timestamp", "rating", "position", "split").sink_parquet(out, engine="streaming")


def check(*outs):
    cols = ["user_id", "item_id", "timestamp", "rating", "position", "split"]
    frames = [pq.read_table(o, columns=cols).to_pandas().reset_index(drop=True) for o in outs]
    same = all(f.astype(str).equals(frames[0].astype(str)) for f in frames[1:])
    print(json.dumps({"rows": len(frames[0]), "same": same}))
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "gen": gen(int(sys.argv[2]), sys.argv[3]); sys.exit()
    if cmd == "check": check(*sys.argv[2:])
    engine, src, out = sys.argv[2:5]
    t0 = time.perf_counter()
    {"pandas": run_pandas, "duckdb": run_duckdb, "polars": run_polars}[engine](src, out)
    print(json.dumps({"engine": engine, "rows": pq.ParquetFile(src).metadata.num_rows, "out_rows": pq.ParquetFile(out).metadata.num_rows,
                      "seconds": round(time.perf_counter() - t0, 1), "peak_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}))
