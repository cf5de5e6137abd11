#!/usr/bin/env python3
"""What a user would write instead of driftwatch: imaplib + email + sqlite3.

Fetches every message of one IMAP folder in batches (BODY.PEEK[], like
driftwatch), parses it with the standard library's email package, extracts
order, status and event time with the same regexes as parsers/*.toml, and
commits the raw message, its deltas (one per order in a digest or CSV row)
and each order's latest state to SQLite,
one transaction per batch. Prints one JSON line with what it did.

Only the standard library: runs on any Python 3.9+.
"""

import argparse
import csv
import email
import email.policy
import email.utils
import hashlib
import html.parser
import imaplib
import io
import json
import re
import sqlite3
import ssl
import time
from datetime import datetime
from zoneinfo import ZoneInfo

UTC = ZoneInfo("UTC")


class TableText(html.parser.HTMLParser):
    """HTML to text the way driftwatch's html_to_text renders a table row:
    cells joined with ' | ', one row per line."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.lines, self.cells, self.cell, self.in_cell = [], [], [], False

    def handle_starttag(self, tag, attrs):
        if tag in ("td", "th"):
            self.in_cell, self.cell = True, []

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.cells.append("".join(self.cell).strip())
            self.in_cell = False
        elif tag == "tr":
            self.lines.append(" | ".join(self.cells))
            self.cells = []
        elif tag in ("p", "h1", "h2", "h3", "div", "br"):
            self.lines.append("")

    def handle_data(self, data):
        if self.in_cell:
            self.cell.append(data)
        elif data.strip():
            self.lines.append(data.strip())


def html_to_text(h):
    p = TableText()
    p.feed(h)
    return "\n".join(p.lines)


VENDORS = [
    {
        "vendor": "acme-appraisal",
        "sender": lambda s: s == "status@acme-amc.example" or s.endswith("@notify.acme-amc.example"),
        "subject": re.compile(r"(?i)\border\s+#?\d+"),
        "part": "plain",
        "order_ref": re.compile(r"(?m)^\s*Order\s*#:\s*(?P<v>\d+)\s*$"),
        "status": re.compile(r"(?m)^\s*Status:\s*(?P<v>[^\r\n]+?)\s*$"),
        "event_time": re.compile(r"(?m)^\s*Updated:\s*(?P<v>[^\r\n]+?)\s*$"),
        "fields": {
            "inspection_date": re.compile(r"(?m)^\s*Inspection date:\s*(?P<v>[^\r\n]+?)\s*$"),
            "appraiser": re.compile(r"(?m)^\s*Appraiser:\s*(?P<v>[^\r\n]+?)\s*$"),
            "fee": re.compile(r"(?m)^\s*Fee:\s*(?P<v>[^\r\n]+?)\s*$"),
        },
        "time_format": "%m/%d/%Y %I:%M %p",
        "tz": ZoneInfo("America/Chicago"),
        "status_map": {
            "Order Received": "ordered", "Accepted": "accepted",
            "Inspection Scheduled": "scheduled", "Inspection Complete": "in_progress",
            "On Hold": "on_hold", "Report Delivered": "completed", "Cancelled": "cancelled",
        },
    },
    {
        "vendor": "keystone-title",
        "sender": lambda s: s.endswith("@keystonetitle.example"),
        "subject": re.compile(r"(?i)title order"),
        "part": "html",
        "order_ref": re.compile(r"(?m)^Order Number \| (?P<v>[A-Z]-\d+)$"),
        "status": re.compile(r"(?m)^Status \| (?P<v>[^|\n]+)$"),
        "event_time": re.compile(r"(?m)^Last Updated \| (?P<v>[^|\n]+)$"),
        "fields": {
            "property": re.compile(r"(?m)^Property \| (?P<v>[^|\n]+)$"),
            "examiner": re.compile(r"(?m)^Examiner \| (?P<v>[^|\n]+)$"),
        },
        "time_format": "%Y-%m-%d %H:%M",
        "tz": ZoneInfo("America/New_York"),
        "status_map": {
            "Order Opened": "ordered", "Title Search In Progress": "in_progress",
            "Title Search Complete": "completed", "Curative Required": "on_hold",
            "Cancelled": "cancelled",
        },
    },
]

VENDORS += [
    {
        "vendor": "rivergate-flood",
        "sender": lambda s: s == "digest@rivergateflood.example",
        "subject": re.compile(r"(?i)rivergate daily digest"),
        "part": "plain",
        # One block per order, every match a delta (repeat = true).
        "repeat": re.compile(
            r"(?m)^Order (?P<order_ref>FL-\d+) \| Status: (?P<status>[^|\r\n]+?) \| Updated "
            r"(?P<event_time>\d{4}-\d{2}-\d{2} \d{2}:\d{2})(?: \| Zone: (?P<flood_zone>[A-Z0-9]+))?"
            r"[ \t]*(?:\r?\n[ \t]+Property: (?P<property>[^\r\n]+))?"),
        "fields": ["flood_zone", "property"],
        "time_format": "%Y-%m-%d %H:%M",
        "tz": ZoneInfo("America/New_York"),
        "status_map": {
            "Order Received": "ordered", "In Research": "in_progress", "Needs Info": "on_hold",
            "Determination Complete": "completed", "Life of Loan Monitoring": "completed",
            "Cancelled": "cancelled",
        },
    },
    {
        "vendor": "pinnacle-credit",
        "sender": lambda s: s == "reports@pinnaclecredit.example",
        "subject": re.compile(r"(?i)daily order status report"),
        # One CSV row per delta.
        "csv": re.compile(r"(?i)^pinnacle_status_\d{8}\.csv$"),
        "columns": {"order_ref": "Order ID", "status": "Status", "event_time": "Updated"},
        "fields": {"loan_number": "Loan Number", "borrower": "Borrower", "product": "Product",
                   "bureau_fee": "Bureau Fee"},
        "time_format": "%m/%d/%Y %H:%M",
        "tz": ZoneInfo("America/Denver"),
        "status_map": {
            "Ordered": "ordered", "In Process": "in_progress",
            "Pending Consumer Verification": "on_hold", "Completed": "completed",
            "Complete": "completed", "Cancelled": "cancelled",
        },
    },
]


def delta(v, order_ref, status_word, event_time, fields):
    """A delta dict, or a quarantine reason string."""
    status = v["status_map"].get(status_word)
    if status is None:
        return f"unmapped status {status_word}"
    local = datetime.strptime(event_time, v["time_format"]).replace(tzinfo=v["tz"])
    return {
        "order_ref": order_ref,
        "status": status,
        "event_time": local.astimezone(UTC).isoformat(),
        "fields": fields,
    }


def extract_many(v, msg):
    """Deltas of a digest vendor (repeat pattern or CSV), or a reason."""
    out = []
    if "repeat" in v:
        part = msg.get_body(preferencelist=("plain",))
        if part is None:
            return "no plain part"
        for m in v["repeat"].finditer(part.get_content()):
            fields = {f: m.group(f) for f in v["fields"] if m.group(f)}
            d = delta(v, m.group("order_ref"), m.group("status").strip(), m.group("event_time"), fields)
            if isinstance(d, str):
                return d
            out.append(d)
    else:
        for att in msg.iter_attachments():
            if not v["csv"].match(att.get_filename() or ""):
                continue
            text = att.get_payload(decode=True).decode("utf-8-sig")
            for row in csv.DictReader(io.StringIO(text)):
                c = v["columns"]
                fields = {k: row[col] for k, col in v["fields"].items() if row.get(col)}
                d = delta(v, row[c["order_ref"]], row[c["status"]], row[c["event_time"]], fields)
                if isinstance(d, str):
                    return d
                out.append(d)
    return out or "no orders found"


SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, uid INTEGER UNIQUE,
  message_id TEXT, sha256 BLOB UNIQUE, raw BLOB, sender TEXT, subject TEXT,
  disposition TEXT, vendor TEXT, reason TEXT);
CREATE TABLE IF NOT EXISTS deltas (offset INTEGER PRIMARY KEY, message INTEGER,
  vendor TEXT, order_ref TEXT, status TEXT, event_time TEXT, fields TEXT);
CREATE TABLE IF NOT EXISTS orders (vendor TEXT, order_ref TEXT, status TEXT,
  event_time TEXT, fields TEXT, PRIMARY KEY (vendor, order_ref));
CREATE TABLE IF NOT EXISTS checkpoint (folder TEXT PRIMARY KEY, last_uid INTEGER);
"""


def extract(msg):
    """(vendor, [delta, ...]) or (vendor_or_None, quarantine reason)."""
    sender = email.utils.parseaddr(msg.get("From", ""))[1].lower()
    subject = str(msg.get("Subject", ""))
    for v in VENDORS:
        if not v["sender"](sender):
            continue
        if not v["subject"].search(subject):
            return v["vendor"], "subject not recognised"
        if "repeat" in v or "csv" in v:
            return v["vendor"], extract_many(v, msg)
        part = msg.get_body(preferencelist=(v["part"],))
        if part is None:
            return v["vendor"], f"no {v['part']} part"
        text = part.get_content()
        if v["part"] == "html":
            text = html_to_text(text)
        got = {}
        for key in ("order_ref", "status", "event_time"):
            m = v[key].search(text)
            if not m:
                return v["vendor"], f"{key} not found"
            got[key] = m.group("v").strip()
        fields = {}
        for name, rx in v["fields"].items():
            m = rx.search(text)
            if m:
                fields[name] = m.group("v").strip()
        d = delta(v, got["order_ref"], got["status"], got["event_time"], fields)
        return v["vendor"], d if isinstance(d, str) else [d]
    return None, f"unknown sender {sender}"


def store_batch(db, batch):
    with db:  # one transaction per batch
        last = 0
        for uid, raw in batch:
            last = max(last, uid)
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            vendor, result = extract(msg)
            parsed = isinstance(result, list)
            cur = db.execute(
                "INSERT OR IGNORE INTO messages (uid, message_id, sha256, raw, sender, subject,"
                " disposition, vendor, reason) VALUES (?,?,?,?,?,?,?,?,?)",
                (uid, msg.get("Message-ID"), hashlib.sha256(raw).digest(), raw,
                 str(msg.get("From", "")), str(msg.get("Subject", "")),
                 "parsed" if parsed else "quarantined", vendor,
                 None if parsed else result),
            )
            if not parsed or cur.rowcount == 0:
                continue
            for d in result:
                fields = json.dumps(d["fields"])
                db.execute(
                    "INSERT INTO deltas (message, vendor, order_ref, status, event_time, fields)"
                    " VALUES (?,?,?,?,?,?)",
                    (cur.lastrowid, vendor, d["order_ref"], d["status"], d["event_time"], fields),
                )
                db.execute(
                    "INSERT INTO orders (vendor, order_ref, status, event_time, fields) VALUES (?,?,?,?,?)"
                    " ON CONFLICT (vendor, order_ref) DO UPDATE SET status = excluded.status,"
                    " event_time = excluded.event_time, fields = excluded.fields"
                    " WHERE excluded.event_time >= orders.event_time",
                    (vendor, d["order_ref"], d["status"], d["event_time"], fields),
                )
        db.execute(
            "INSERT INTO checkpoint VALUES ('INBOX', ?) ON CONFLICT (folder) DO UPDATE"
            " SET last_uid = max(last_uid, excluded.last_uid)", (last,))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ca-file", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password-file", required=True)
    ap.add_argument("--folder", default="INBOX")
    ap.add_argument("--db", required=True)
    ap.add_argument("--batch", type=int, default=200)
    a = ap.parse_args()

    start = time.monotonic()
    db = sqlite3.connect(a.db)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.executescript(SCHEMA)
    ctx = ssl.create_default_context(cafile=a.ca_file)
    imap = imaplib.IMAP4_SSL(a.host, a.port, ssl_context=ctx)
    imap.login(a.user, open(a.password_file).read().strip())
    imap.select(a.folder, readonly=True)
    typ, data = imap.uid("SEARCH", None, "ALL")
    uids = [int(u) for u in data[0].split()]
    n = 0
    for i in range(0, len(uids), a.batch):
        chunk = uids[i:i + a.batch]
        typ, data = imap.uid("FETCH", f"{chunk[0]}:{chunk[-1]}", "(UID BODY.PEEK[])")
        batch = []
        for item in data:
            if not isinstance(item, tuple):
                continue
            m = re.search(rb"UID (\d+)", item[0])
            batch.append((int(m.group(1)), item[1]))
        store_batch(db, batch)
        n += len(batch)
    imap.logout()
    counts = db.execute(
        "SELECT (SELECT count(*) FROM messages WHERE disposition = 'parsed'),"
        " (SELECT count(*) FROM messages WHERE disposition = 'quarantined'),"
        " (SELECT count(*) FROM deltas)").fetchone()
    db.close()
    print(json.dumps({
        "messages": n, "parsed": counts[0], "quarantined": counts[1], "deltas": counts[2],
        "seconds": time.monotonic() - start,
    }))


if __name__ == "__main__":
    main()
