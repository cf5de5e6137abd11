#!/usr/bin/env python3
"""Makes the PDF and XLSX fixtures: real-shaped vendor documents wrapped in
the emails that carry them.

    python3 -m venv /tmp/fixtures-venv
    /tmp/fixtures-venv/bin/pip install reportlab==4.* openpyxl==3.1.*
    /tmp/fixtures-venv/bin/python scripts/make-fixtures.py

Writes fixtures/summit-appraisal/*.eml (an appraisal status report PDF),
fixtures/ridgeline-title/*.eml (a title vendor's XLSX status sheet) and the
bare documents under tests/data/documents/ (the cut/garbage tests start from
them). Output is deterministic (fixed dates, invariant PDF ids), so running
it again changes nothing; `driftwatch parsers test` then checks the
`.expected.json` files beside the emails.
"""

import base64
import datetime as dt
import io
import pathlib
import textwrap

from openpyxl import Workbook
from openpyxl.styles import Font
from reportlab.lib.pagesizes import letter
from reportlab.pdfgen import canvas
from reportlab import rl_config

ROOT = pathlib.Path(__file__).resolve().parent.parent
rl_config.invariant = 1  # fixed /ID and dates: the same bytes every run


def appraisal_pdf(order, loan, borrower, address, status, when, value=None, note=None,
                  password=None):
    """An appraisal management company's one-page status report (encrypted
    with a user password when one is given, as some vendors do)."""
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=letter, invariant=1, encrypt=password)
    c.setTitle(f"Appraisal Status Report {order}")
    y = 740
    c.setFont("Helvetica-Bold", 16)
    c.drawString(72, y, "Summit Appraisal Group")
    y -= 20
    c.setFont("Helvetica", 10)
    c.drawString(72, y, "1200 Ridge Road, Suite 400, Denver, CO 80202  |  (303) 555-0199")
    y -= 36
    c.setFont("Helvetica-Bold", 13)
    c.drawString(72, y, "Appraisal Status Report")
    y -= 28
    c.setFont("Helvetica", 11)
    rows = [
        ("Order Number:", order),
        ("Loan Number:", loan),
        ("Borrower:", borrower),
        ("Property Address:", address),
        ("Current Status:", status),
        ("Status Date:", when),
    ]
    if value:
        rows.append(("Appraised Value:", value))
    for label, val in rows:
        c.drawString(72, y, f"{label} {val}")
        y -= 18
    if note:
        y -= 12
        c.setFont("Helvetica-Oblique", 10)
        for line in textwrap.wrap(note, 90):
            c.drawString(72, y, line)
            y -= 14
    c.setFont("Helvetica", 8)
    c.drawString(72, 60, "This report is generated automatically. Do not reply to this message.")
    c.showPage()
    c.save()
    return buf.getvalue()


def title_xlsx(rows, day):
    """A title vendor's daily status workbook: a summary sheet first, then
    the orders under a title line and a blank row."""
    wb = Workbook()
    summary = wb.active
    summary.title = "Summary"
    summary["A1"] = "Ridgeline Title & Escrow - Daily Status"
    summary["A2"] = "Report date"
    summary["B2"] = day
    summary["A3"] = "Open files"
    summary["B3"] = len(rows)
    ws = wb.create_sheet("Orders")
    ws["A1"] = f"Open title orders as of {day:%m/%d/%Y}"
    ws["A1"].font = Font(bold=True, size=14)
    header = ["File No", "Loan Number", "Borrower", "Status", "Last Updated", "Title Premium", "Commitment Date"]
    ws.append([])
    ws.append(header)
    for cell in ws[3]:
        cell.font = Font(bold=True)
    for r in rows:
        ws.append(r)
    ws.column_dimensions["C"].width = 28
    for row in ws.iter_rows(min_row=4, min_col=5, max_col=5):
        for cell in row:
            cell.number_format = "mm/dd/yyyy hh:mm"
    for row in ws.iter_rows(min_row=4, min_col=7, max_col=7):
        for cell in row:
            cell.number_format = "mm/dd/yyyy"
    buf = io.BytesIO()
    wb.save(buf)
    return normalise_zip(buf.getvalue())


def normalise_zip(data):
    """openpyxl stamps the current time into docProps and the zip entries;
    rewrite both so the bytes do not change between runs."""
    import zipfile

    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                import re

                body = re.sub(rb"<dcterms:(created|modified)([^>]*)>[^<]*<",
                              rb"<dcterms:\1\2>2026-11-24T00:00:00Z<", body)
            zi = zipfile.ZipInfo(info.filename, date_time=(2026, 11, 24, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(zi, body)
    return out.getvalue()


def email(frm, to, subject, date, msgid, body, attachment=None):
    """A multipart/mixed email as the vendor's system sends it (CRLF)."""
    boundary = "----=_Part_" + msgid.split("@")[0].replace(".", "_")
    lines = [
        f"Return-Path: <{frm[1]}>",
        f"From: {frm[0]} <{frm[1]}>",
        f"To: {to}",
        f"Subject: {subject}",
        f"Date: {date}",
        f"Message-ID: <{msgid}>",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/mixed; boundary="{boundary}"',
        "",
        f"--{boundary}",
        'Content-Type: text/plain; charset="utf-8"',
        "Content-Transfer-Encoding: 7bit",
        "",
        *body.strip("\n").split("\n"),
        "",
    ]
    if attachment:
        name, ctype, data = attachment
        b64 = base64.b64encode(data).decode()
        lines += [
            f"--{boundary}",
            f'Content-Type: {ctype}; name="{name}"',
            "Content-Transfer-Encoding: base64",
            f'Content-Disposition: attachment; filename="{name}"',
            "",
            *[b64[i:i + 76] for i in range(0, len(b64), 76)],
            "",
        ]
    lines.append(f"--{boundary}--")
    return ("\r\n".join(lines) + "\r\n").encode()


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    print(f"wrote {path.relative_to(ROOT)} ({len(data)} bytes)")


def summit():
    sender = ("Summit Appraisal Group", "reports@summitappraisal.example")
    body = """
Hello,

Attached is the current status report for your appraisal order.
Please log in to the Summit portal for documents and messages.

Summit Appraisal Group - Client Services
"""
    cases = [
        ("01-sa-20931-scheduled", "SA-20931", "7700123", "Jordan Ellis",
         "14 Elm Street, Springfield, IL 62704", "Inspection Scheduled",
         "11/23/2026 09:40 AM", None,
         "Inspection appointment confirmed with the borrower for 11/25/2026 at 10:00 AM.",
         "Mon, 23 Nov 2026 09:41:07 -0600"),
        ("02-sa-20931-completed", "SA-20931", "7700123", "Jordan Ellis",
         "14 Elm Street, Springfield, IL 62704", "Report Delivered",
         "11/27/2026 03:05 PM", "$412,000.00", None,
         "Fri, 27 Nov 2026 15:06:44 -0600"),
    ]
    # Mail that must be quarantined with the reason, never guessed: a PDF
    # cut in transit (half its bytes), and one encrypted with a password.
    cases += [
        ("03-sa-20944-cut-pdf", "SA-20944", "7700180", "Riley Moss",
         "9 Birch Lane, Peoria, IL 61602", "Inspection Completed",
         "11/28/2026 11:20 AM", None, None, "Sat, 28 Nov 2026 11:21:02 -0600"),
        ("04-sa-20951-encrypted-pdf", "SA-20951", "7700191", "Casey Ford",
         "300 Lake Shore Dr, Chicago, IL 60601", "Order Received",
         "11/28/2026 01:02 PM", None, None, "Sat, 28 Nov 2026 13:03:40 -0600"),
    ]
    for stem, order, loan, borrower, addr, status, when, value, note, date in cases:
        pdf = appraisal_pdf(order, loan, borrower, addr, status, when, value, note,
                            password="s3cret" if "encrypted" in stem else None)
        if "cut" in stem:
            pdf = pdf[: len(pdf) // 2]
        if stem.startswith("01"):
            write(ROOT / "tests/data/documents/appraisal-status.pdf", pdf)
        write(ROOT / f"fixtures/summit-appraisal/{stem}.eml", email(
            sender, "Appraisal Desk <appraisals@lender.example>",
            f"Appraisal Status Report - Order {order}", date,
            f"{stem}.{order}@mailer.summitappraisal.example", body,
            (f"StatusReport_{order}.pdf", "application/pdf", pdf)))


def ridgeline():
    sender = ("Ridgeline Title & Escrow", "status@ridgelinetitle.example")
    day = dt.date(2026, 11, 24)
    rows = [
        ["RT-5521", "LN-88001", "Patel, Anika", "Title Search Ordered",
         dt.datetime(2026, 11, 24, 8, 5), 1250.00, None],
        ["RT-5522", "LN-88007", "O'Brien, Sean", "Commitment Issued",
         dt.datetime(2026, 11, 24, 11, 30), 980.5, dt.date(2026, 11, 24)],
        ["RT-5523", "LN-88013", "Nguyen, Lan", "Closed",
         dt.datetime(2026, 11, 24, 16, 45), 1432.75, dt.date(2026, 11, 20)],
    ]
    xlsx = title_xlsx(rows, day)
    write(ROOT / "tests/data/documents/title-status.xlsx", xlsx)
    body = """
Good evening,

Attached is today's status sheet for your open title orders
(sheet "Orders"). Contact your escrow officer with any questions.

Ridgeline Title & Escrow
"""
    write(ROOT / "fixtures/ridgeline-title/01-daily-2026-11-24.eml", email(
        sender, "Title Desk <title@lender.example>",
        "Daily Title Status - 11/24/2026", "Tue, 24 Nov 2026 18:02:10 -0700",
        "20261124.rt.daily@ridgelinetitle.example", body,
        ("Ridgeline_Status_2026-11-24.xlsx",
         "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", xlsx)))
    # Cut in transit: the first two thirds of the workbook's zip.
    write(ROOT / "fixtures/ridgeline-title/03-daily-2026-11-25-cut-xlsx.eml", email(
        sender, "Title Desk <title@lender.example>",
        "Daily Title Status - 11/25/2026", "Wed, 25 Nov 2026 18:03:31 -0700",
        "20261125.rt.daily@ridgelinetitle.example", body,
        ("Ridgeline_Status_2026-11-25.xlsx",
         "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
         xlsx[: len(xlsx) * 2 // 3])))
    quiet = title_xlsx([], dt.date(2026, 11, 26))
    write(ROOT / "fixtures/ridgeline-title/02-daily-2026-11-26-no-activity.eml", email(
        sender, "Title Desk <title@lender.example>",
        "Daily Title Status - 11/26/2026", "Thu, 26 Nov 2026 18:01:55 -0700",
        "20261126.rt.daily@ridgelinetitle.example", body,
        ("Ridgeline_Status_2026-11-26.xlsx",
         "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", quiet)))


if __name__ == "__main__":
    summit()
    ridgeline()
