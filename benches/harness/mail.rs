//! Benchmark mail: the shipped vendors' shapes at realistic sizes.
//!
//! A seeded mix: 60% Acme plain-text status mail, 35% Keystone HTML tables
//! (multipart/alternative, quoted-printable), 5% mail no parser accepts
//! (newsletters), each 2-30 KB (uniform), padded with the legal and
//! marketing boilerplate such mail carries.

use crate::support::bin::Rng;
use crate::support::vendor_mail;

/// One vendor shape, for the parse benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Acme,
    Keystone,
    Unknown,
}

impl Shape {
    pub fn label(self) -> &'static str {
        match self {
            Shape::Acme => "acme-appraisal (plain text)",
            Shape::Keystone => "keystone-title (HTML table)",
            Shape::Unknown => "unknown sender (quarantined)",
        }
    }
}

const ACME_STATUSES: [&str; 4] = [
    "Accepted",
    "Inspection Scheduled",
    "Inspection Complete",
    "Report Delivered",
];
const KEYSTONE_STATUSES: [&str; 4] = [
    "Order Opened",
    "Title Search In Progress",
    "Title Search Complete",
    "Curative Required",
];

/// Message `i` of shape `shape`, about `size` bytes in all.
pub fn message(shape: Shape, i: u32, size: usize) -> Vec<u8> {
    let step = (i % 4) as usize;
    let order = 100_000 + i / 4;
    match shape {
        Shape::Acme => {
            let base = vendor_mail::acme_padded(
                order,
                ACME_STATUSES[step],
                &format!("11/23/2026 09:{:02} AM", step * 10),
                &format!("bench-acme-{i}@acme-amc.example"),
                0,
            );
            vendor_mail::acme_padded(
                order,
                ACME_STATUSES[step],
                &format!("11/23/2026 09:{:02} AM", step * 10),
                &format!("bench-acme-{i}@acme-amc.example"),
                size.saturating_sub(base.len()),
            )
        }
        Shape::Keystone => keystone(order, KEYSTONE_STATUSES[step], step, i, size),
        Shape::Unknown => newsletter(i, size),
    }
}

fn padding(line: &str, bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + line.len() + 2);
    while out.len() < bytes {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

/// Keystone Title's HTML status mail (see parsers/keystone-title.toml and
/// demo/mail/06-keystone-T7781.eml).
fn keystone(order: u32, status: &str, step: usize, i: u32, size: usize) -> Vec<u8> {
    let head = format!(
        "From: Keystone Title Notifications <notifications@keystonetitle.example>\r\n\
         To: orders@lender.example\r\n\
         Subject: Title order T-{order} status update\r\n\
         Date: Tue, 24 Nov 2026 14:07:00 -0500\r\n\
         Message-ID: <bench-ks-{i}@keystonetitle.example>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"=_ks_1\"\r\n\
         \r\n\
         --=_ks_1\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         View this message in an HTML-capable mail client.\r\n\
         \r\n\
         --=_ks_1\r\n\
         Content-Type: text/html; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\
         \r\n\
         <html><head><style>td{{padding:4px}}</style></head><body>\r\n\
         <h2>Title Order Update</h2>\r\n\
         <table border=3D\"1\">\r\n\
         <tr><td>Order Number</td><td>T-{order}</td></tr>\r\n\
         <tr><td>Status</td><td>{status}</td></tr>\r\n\
         <tr><td>Last Updated</td><td>2026-11-24 14:{:02}</td></tr>\r\n\
         <tr><td>Property</td><td>{} Harbor View Rd, Portland, ME</td></tr>\r\n\
         <tr><td>Examiner</td><td>R. O&#39;Neil</td></tr>\r\n\
         </table>\r\n",
        step * 10,
        order % 977,
    );
    let tail = "</body></html>\r\n--=_ks_1--\r\n";
    let pad = padding(
        "<p style=3D\"font-size:10px;color:#888\">Keystone Title Agency LLC. This not=\r\nice is confidential.</p>",
        size.saturating_sub(head.len() + tail.len()),
    );
    format!("{head}{pad}{tail}").into_bytes()
}

/// Mail from a sender no parser knows: archived and quarantined.
fn newsletter(i: u32, size: usize) -> Vec<u8> {
    let head = format!(
        "From: News <news@mortgage-weekly.example>\r\nTo: orders@lender.example\r\n\
         Subject: Weekly digest {i}\r\nDate: Tue, 24 Nov 2026 07:00:00 +0000\r\n\
         Message-ID: <bench-weekly-{i}@mortgage-weekly.example>\r\n\r\n"
    );
    let pad = padding(
        "Rates, regulation and the week in mortgage technology, in brief.",
        size.saturating_sub(head.len()),
    );
    format!("{head}{pad}").into_bytes()
}

/// `count` messages in the mix, sizes uniform in 2-30 KB, from `seed`.
pub fn mix(count: u32, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|i| {
            let shape = match rng.range(0, 100) {
                0..60 => Shape::Acme,
                60..95 => Shape::Keystone,
                _ => Shape::Unknown,
            };
            let size = rng.range(2 * 1024, 30 * 1024 + 1) as usize;
            message(shape, i, size)
        })
        .collect()
}

/// The mixes the ingest benchmarks run, each reported on its own row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// About one delta per message: [`mix`].
    Light,
    /// What vendors send in bulk: [`heavy_mix`].
    DeltaHeavy,
}

impl Mix {
    pub fn label(self) -> &'static str {
        match self {
            Mix::Light => "light mix (2-30 KB, ~1 delta/msg)",
            Mix::DeltaHeavy => "delta-heavy mix (5 shapes, 15% CSV digests)",
        }
    }

    pub fn messages(self, count: u32, seed: u64) -> Vec<Vec<u8>> {
        match self {
            Mix::Light => mix(count, seed),
            Mix::DeltaHeavy => heavy_mix(count, seed),
        }
    }
}

const RIVERGATE_STATUSES: [&str; 4] = [
    "Order Received",
    "In Research",
    "Determination Complete",
    "Needs Info",
];
/// "Pending Consumer Verification" is rare (1 row in 100): the reparse
/// benchmark's rule change remaps it, so that change touches few orders.
const PINNACLE_STATUSES: [&str; 3] = ["Ordered", "In Process", "Completed"];
pub const PINNACLE_RARE_STATUS: &str = "Pending Consumer Verification";

/// The delta-heavy mix: the shapes vendors actually send, with most deltas in
/// digests. Per 100 messages: 30 Acme plain text, 20 Keystone text+HTML
/// (quoted-printable), 15 Keystone HTML-only in base64, 20 Rivergate
/// quoted-printable UTF-8 digests of 2-6 orders, 15 Pinnacle CSV digests of
/// 5-50 rows (base64 attachments). About 5 deltas per message over tens of
/// thousands of distinct orders (order numbers drawn from a pool 8x the
/// message count per vendor, so most orders are new and some repeat).
/// Bodies are padded to 2-12 KB.
pub fn heavy_mix(count: u32, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed ^ 0x05ee_d0fd_e17a);
    let pool = count.max(100) * 8;
    (0..count)
        .map(|i| {
            let size = rng.range(2 * 1024, 12 * 1024 + 1) as usize;
            let step = rng.range(0, 4) as usize;
            let order = 100_000 + rng.range(0, u64::from(pool)) as u32;
            match rng.range(0, 100) {
                0..30 => vendor_mail::acme_padded(
                    order,
                    ACME_STATUSES[step],
                    &format!("11/23/2026 09:{:02} AM", step * 10),
                    &format!("heavy-acme-{seed}-{i}@acme-amc.example"),
                    size.saturating_sub(700),
                ),
                30..50 => keystone(order, KEYSTONE_STATUSES[step], step, i, size),
                50..65 => keystone_base64(order, KEYSTONE_STATUSES[step], step, i, seed, size),
                65..85 => {
                    let n = rng.range(2, 7) as u32;
                    let orders: Vec<(u32, usize)> = (0..n)
                        .map(|_| {
                            (
                                100_000 + rng.range(0, u64::from(pool)) as u32,
                                rng.range(0, 4) as usize,
                            )
                        })
                        .collect();
                    rivergate_digest(&orders, i, seed, size)
                }
                _ => {
                    let n = rng.range(5, 51) as u32;
                    let rows: Vec<(u32, &str)> = (0..n)
                        .map(|_| {
                            let status = if rng.range(0, 100) == 0 {
                                PINNACLE_RARE_STATUS
                            } else {
                                PINNACLE_STATUSES[rng.range(0, 3) as usize]
                            };
                            (100_000 + rng.range(0, u64::from(pool)) as u32, status)
                        })
                        .collect();
                    pinnacle_digest(&rows, i, seed)
                }
            }
        })
        .collect()
}

/// Keystone's table mail as some of its templates send it: one text/html
/// part, base64 (no plain-text alternative).
fn keystone_base64(
    order: u32,
    status: &str,
    step: usize,
    i: u32,
    seed: u64,
    size: usize,
) -> Vec<u8> {
    let mut html = format!(
        "<html><body><h2>Title Order Update</h2>\r\n<table border=\"1\">\r\n\
         <tr><td>Order Number</td><td>T-{order}</td></tr>\r\n\
         <tr><td>Status</td><td>{status}</td></tr>\r\n\
         <tr><td>Last Updated</td><td>2026-11-24 15:{:02}</td></tr>\r\n\
         <tr><td>Property</td><td>{} Côte Rd, Lévis</td></tr>\r\n\
         </table>\r\n",
        step * 10,
        order % 977,
    );
    while html.len() * 4 / 3 < size.saturating_sub(600) {
        html.push_str(
            "<p style=\"font-size:10px\">Keystone Title Agency LLC. Confidential.</p>\r\n",
        );
    }
    html.push_str("</body></html>\r\n");
    format!(
        "From: Keystone Title Notifications <notifications@keystonetitle.example>\r\n\
         To: orders@lender.example\r\n\
         Subject: Title order T-{order} status update\r\n\
         Date: Tue, 24 Nov 2026 15:07:00 -0500\r\n\
         Message-ID: <heavy-ks64-{seed}-{i}@keystonetitle.example>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/html; charset=utf-8\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n\
         {}",
        base64_lines(html.as_bytes())
    )
    .into_bytes()
}

/// Rivergate's daily digest: quoted-printable UTF-8, one block per order.
fn rivergate_digest(orders: &[(u32, usize)], i: u32, seed: u64, size: usize) -> Vec<u8> {
    let mut body = String::from("Daily digest =E2=80=94 orders that changed today:\r\n\r\n");
    for (k, (order, step)) in orders.iter().enumerate() {
        body.push_str(&format!(
            "Order FL-{order} | Status: {} | Updated 2026-11-24 1{}:{:02} | Zone: AE\r\n\
             \x20   Property: {} Rue Saint-=C3=89lie, Biddeford, ME 04005\r\n",
            RIVERGATE_STATUSES[*step],
            k % 10,
            (k * 7) % 60,
            order % 911,
        ));
    }
    body.push_str("\r\n");
    while body.len() < size.saturating_sub(500) {
        body.push_str("Rivergate Flood Services =C2=B7 determinations you can rely on. Confide=\r\nntial.\r\n");
    }
    format!(
        "From: Rivergate Digest <digest@rivergateflood.example>\r\n\
         To: orders@lender.example\r\n\
         Subject: Rivergate daily digest 2026-11-24\r\n\
         Date: Tue, 24 Nov 2026 20:00:00 -0500\r\n\
         Message-ID: <heavy-rg-{seed}-{i}@rivergateflood.example>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\
         \r\n\
         {body}"
    )
    .into_bytes()
}

/// Pinnacle's daily CSV (base64 attachment), one row per order.
fn pinnacle_digest(rows: &[(u32, &str)], i: u32, seed: u64) -> Vec<u8> {
    let mut csv =
        String::from("Order ID,Loan Number,Borrower,Product,Status,Updated,Bureau Fee\r\n");
    for (k, (order, status)) in rows.iter().enumerate() {
        csv.push_str(&format!(
            "PC-{order},LN-{},\"García, María José\",Tri-Merge,{status},11/24/2026 {:02}:{:02},$38.50\r\n",
            order + 7,
            8 + k % 10,
            (k * 13) % 60,
        ));
    }
    let boundary = "----=_Part_bench_1790233455";
    format!(
        "From: Pinnacle Credit Reports <reports@pinnaclecredit.example>\r\n\
         To: Credit Desk <creditdesk@lender.example>\r\n\
         Subject: Pinnacle Daily Order Status Report - 11/24/2026\r\n\
         Date: Tue, 24 Nov 2026 18:05:12 -0700\r\n\
         Message-ID: <heavy-pc-{seed}-{i}@reports.pinnaclecredit.example>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=\"utf-8\"\r\n\
         \r\n\
         Attached is your daily order status report ({} orders with activity).\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/csv\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"pinnacle_status_20261124.csv\"\r\n\
         \r\n\
         {}\r\n\
         --{boundary}--\r\n",
        rows.len(),
        base64_lines(csv.as_bytes())
    )
    .into_bytes()
}

/// Base64 in 76-character lines, CRLF-terminated, as mail carries it.
fn base64_lines(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len() * 4 / 3 + data.len() / 38 + 4);
    for (n, c) in data.chunks(3).enumerate() {
        if n > 0 && n % 19 == 0 {
            out.push_str("\r\n");
        }
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= c.len() {
                out.push(A[(v >> (18 - 6 * k)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out.push_str("\r\n");
    out
}
