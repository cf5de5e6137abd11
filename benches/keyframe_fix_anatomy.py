#!/usr/bin/env python3
"""What a key frame's fix costs SQLite itself, without driftwatch in the way.

Runs driftwatch's fix once on a copy of the reconcile benchmark's database
(1M orders, 1% drift: the harness keeps it under DRIFTWATCH_BENCH_DIR), then
replays exactly the rows that run wrote (fix deltas, order view rows,
drifts, outbox events) into fresh copies of the same database from Python's
sqlite3, in one transaction with driftwatch's pragmas, single-row prepared
statements, and times it with parts changed. What the `full` variant takes
is a bound for the write half of `reconcile` (policy fix) on this disk: the
compare half comes on top of it.

    DRIFTWATCH_BENCH_DIR=/work/bench DRIFTWATCH_BENCH_ONLY=reconcile ./scripts/bench.sh  # makes the data
    python3 benches/keyframe_fix_anatomy.py /work/bench/1000000            # all variants, 3 runs
    python3 benches/keyframe_fix_anatomy.py /work/bench/1000000 full nockpt

Variants: full (as driftwatch commits it: the commit checkpoints the WAL);
nockpt (the checkpoint left out of the transaction, then timed on its own:
moved, not saved); nostatus (without the `orders_status` index); cache (a
256 MB page cache, so nothing spills before the commit).
"""
import glob
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = int(os.environ.get("RUNS", "3"))


def fresh(base: str, path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    shutil.copyfile(base, path)
    os.sync()


def fix_rows(data: str, dir: str):
    """The rows one driftwatch fix run writes, read back from its database."""
    base = os.path.join(data, "base.db")
    post = os.path.join(dir, "post.db")
    fresh(base, post)
    config = open(os.path.join(data, "driftwatch.toml")).read().splitlines()
    config = [f'database = "{post}"' if line.startswith("database") else line for line in config]
    toml = os.path.join(dir, "post.toml")
    open(toml, "w").write("\n".join(config) + "\n")
    export = sorted(glob.glob(os.path.join(data, "export-*.csv")))[0]
    binary = os.environ.get("DRIFTWATCH", os.path.join(ROOT, "target", "release", "driftwatch"))
    subprocess.run([binary, "--config", toml, "reconcile", "--vendor", "bench", "--file", export],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    top = sqlite3.connect(base).execute('SELECT max("offset") FROM deltas').fetchone()[0]
    db = sqlite3.connect(post)
    rows = {
        "deltas": db.execute('SELECT * FROM deltas WHERE "offset" > ?', (top,)).fetchall(),
        "orders": db.execute("SELECT * FROM orders WHERE last_offset > ?", (top,)).fetchall(),
        "key_frames": db.execute("SELECT * FROM key_frames").fetchall(),
        "reconcile_runs": db.execute("SELECT * FROM reconcile_runs").fetchall(),
        "drifts": db.execute("SELECT * FROM drifts").fetchall(),
        "outbox_events": db.execute("SELECT * FROM outbox_events").fetchall(),
    }
    db.close()
    return base, rows


def insert(db, table: str, rows, upsert: str = "") -> None:
    if rows:
        marks = ",".join("?" * len(rows[0]))
        db.executemany(f"INSERT INTO {table} VALUES ({marks}) {upsert}", rows)


def replay(variant: str, base: str, rows, path: str):
    fresh(base, path)
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in ["journal_mode = WAL", "synchronous = NORMAL", "foreign_keys = ON",
                   "wal_autocheckpoint = 4096"]:
        db.execute("PRAGMA " + pragma)
    if variant == "nockpt":
        db.execute("PRAGMA wal_autocheckpoint = 0")
    if variant == "cache":
        db.execute("PRAGMA cache_size = -262144")
    if variant == "nostatus":
        db.execute("DROP INDEX orders_status")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("SELECT count(*) FROM key_frames").fetchall()
    start = time.perf_counter()
    db.execute("BEGIN IMMEDIATE")
    insert(db, "key_frames", rows["key_frames"])
    insert(db, "reconcile_runs", rows["reconcile_runs"])
    insert(db, "deltas", rows["deltas"])
    insert(db, "orders", rows["orders"],
           "ON CONFLICT (vendor, order_ref) DO UPDATE SET status = excluded.status,"
           " vendor_status = excluded.vendor_status, fields = excluded.fields,"
           " event_time = excluded.event_time, last_offset = excluded.last_offset,"
           " updated_at = excluded.updated_at, delta_count = excluded.delta_count")
    insert(db, "drifts", rows["drifts"])
    insert(db, "outbox_events", rows["outbox_events"])
    db.execute("COMMIT")
    secs = time.perf_counter() - start
    page = db.execute("PRAGMA page_size").fetchone()[0]
    # The WAL keeps its frames after a checkpoint until the next write.
    frames = (os.path.getsize(path + "-wal") - 32) // (page + 24)
    later = 0.0
    if variant == "nockpt":
        start = time.perf_counter()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        later = time.perf_counter() - start
    db.close()
    return secs, later, frames, frames * page / 1e6


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    data, variants = sys.argv[1], sys.argv[2:] or ["full", "nockpt", "nostatus", "cache"]
    with tempfile.TemporaryDirectory(dir="/tmp") as dir:
        base, rows = fix_rows(data, dir)
        print(", ".join(f"{len(v)} {k}" for k, v in rows.items()))
        times = {v: [] for v in variants}
        for _ in range(RUNS):
            for v in variants:
                times[v].append(replay(v, base, rows, os.path.join(dir, "x.db")))
        for v, runs in times.items():
            secs = statistics.median(r[0] for r in runs)
            later = statistics.median(r[1] for r in runs)
            frames, mb = runs[0][2], runs[0][3]
            extra = f", then the checkpoint on its own {later:.2f} s" if v == "nockpt" else ""
            print(f"{v:9s} write transaction {secs:.2f} s (runs: "
                  f"{' '.join(f'{r[0]:.2f}' for r in runs)}){extra}; {frames} pages, {mb:.0f} MB")


if __name__ == "__main__":
    main()
