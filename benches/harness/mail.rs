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
