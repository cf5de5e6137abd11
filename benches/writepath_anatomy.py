#!/usr/bin/env python3
"""Where the ingest write path's time goes, without driftwatch in the way.

Replays the statements one delta-heavy batch commits (archive row, location,
deltas, order view upsert, in one transaction per 200 messages) against
driftwatch's own SQLite schema (migrations/sqlite), from Python's sqlite3,
and times the same run with parts left out. What the full run reaches here
is a bound for driftwatch's write path on the same disk: any gap between the
two is driftwatch's own overhead; the parts show which tables cost what.

    python3 benches/writepath_anatomy.py            # all variants
    python3 benches/writepath_anatomy.py full noview

Variants: full; noview (no order view upsert); nodeltas (no delta rows);
archive (neither: messages and locations only); cache (full with a 32 MB
page cache); pages4k (full with 4 KiB pages instead of driftwatch's 16 KiB).
The mix: 10,000 messages, 1-30 deltas each (about 8 on average), orders
drawn from 50,000 per vendor, 4 KB of archived (already compressed) mail
per message; the database in a temp dir on disk.
"""
import glob
import json
import os
import random
import sqlite3
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MESSAGES, BATCH, ORDERS = 10_000, 200, 50_000
VENDORS = ["acme-appraisal", "keystone-title", "pinnacle-credit", "ridgeline-title"]
NOW = "2026-12-02T10:00:00.000000Z"


def run(variant: str, dir: str) -> tuple[int, float]:
    path = os.path.join(dir, f"{variant}.db")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA page_size = {4096 if variant == 'pages4k' else 16384}")
    for pragma in ["journal_mode = WAL", "synchronous = NORMAL", "foreign_keys = ON",
                   "wal_autocheckpoint = 4096"]:
        db.execute("PRAGMA " + pragma)
    if variant == "cache":
        db.execute("PRAGMA cache_size = -32768")
    for f in sorted(glob.glob(os.path.join(ROOT, "migrations", "sqlite", "*.sql"))):
        db.executescript(open(f).read())
    rng = random.Random(1)
    blob = os.urandom(4000)
    msg = off = deltas = 0
    start = time.perf_counter()
    for _ in range(MESSAGES // BATCH):
        db.execute("BEGIN IMMEDIATE")
        messages, locations, rows, view = [], [], [], {}
        for _ in range(BATCH):
            msg += 1
            messages.append((msg, os.urandom(32), f"<m{msg}@x>", 14000, blob, 1, "a@b", "Subject",
                             NOW, None, NOW, "parsed", None, "acme-appraisal", "acme-appraisal", 1,
                             b"rules-hash", "zstd"))
            locations.append(("bench", "INBOX", f"1/{msg}", msg, NOW))
            for _ in range(rng.choice([1, 1, 1, 1, 3, 5, 10, 20, 30])):
                off += 1
                deltas += 1
                v, o = rng.choice(VENDORS), f"ORD-{rng.randrange(ORDERS):07d}"
                fields = json.dumps({"property": "12 Harbor View Rd", "fee": "450.00"})
                rows.append((off, v, o, "email", "in_progress", "Inspection Scheduled", fields,
                             "2026-11-24T14:07:00.000000Z", "vendor", NOW, msg, "acme", 1))
                view[(v, o)] = (v, o, "in_progress", "Inspection Scheduled", fields,
                                "2026-11-24T14:07:00.000000Z", off, NOW, 1)
        db.executemany(
            "INSERT INTO messages (id, dedupe_key, message_id, size, raw, raw_complete, sender,"
            " subject, date_header, internal_date, archived_at, disposition, reason, vendor,"
            " parser, parser_version, rules, raw_codec)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", messages)
        if variant not in ("nodeltas", "archive"):
            db.executemany(
                'INSERT INTO deltas ("offset", vendor, order_ref, source, status, vendor_status,'
                " fields, event_time, time_source, recorded_at, message, parser, parser_version)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        if variant not in ("noview", "archive"):
            keys = sorted(view)
            for v in VENDORS:
                mine = [o for (vv, o) in keys if vv == v]
                for i in range(0, len(mine), 500):
                    chunk = mine[i:i + 500]
                    db.execute(f"SELECT * FROM orders WHERE vendor = ? AND order_ref IN"
                               f" ({','.join('?' * len(chunk))})", [v, *chunk]).fetchall()
            db.executemany(
                "INSERT INTO orders VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (vendor, order_ref)"
                " DO UPDATE SET status = excluded.status, vendor_status = excluded.vendor_status,"
                " fields = excluded.fields, event_time = excluded.event_time,"
                " last_offset = excluded.last_offset, updated_at = excluded.updated_at,"
                " delta_count = excluded.delta_count", [view[k] for k in keys])
        db.executemany("INSERT INTO message_locations VALUES (?,?,?,?,?)", locations)
        db.execute("COMMIT")
    secs = time.perf_counter() - start
    db.close()
    return deltas, secs


def main() -> None:
    variants = sys.argv[1:] or ["full", "noview", "nodeltas", "archive", "cache", "pages4k"]
    with tempfile.TemporaryDirectory(dir="/tmp") as dir:
        for v in variants:
            deltas, secs = run(v, dir)
            print(f"{v:9s} {MESSAGES} msgs, {deltas} deltas: {secs:5.2f} s,"
                  f" {deltas / secs:8.0f} deltas/s, {MESSAGES / secs:6.0f} msg/s")


if __name__ == "__main__":
    main()
