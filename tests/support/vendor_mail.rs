//! Vendor status emails for tests, in the shipped vendors' real shapes, with
//! CRLF line endings as they travel over IMAP and SMTP.

/// Acme AMC's plain-text status email (see parsers/acme-appraisal.toml).
/// `updated` is the vendor's local time, `MM/DD/YYYY HH:MM AM`.
pub fn acme(order: u32, status: &str, updated: &str, message_id: &str) -> Vec<u8> {
    acme_padded(order, status, updated, message_id, 0)
}

/// The same, with a footer of `pad` bytes of legal boilerplate, so tests and
/// benchmarks can use realistic 2-30 KB messages.
pub fn acme_padded(
    order: u32,
    status: &str,
    updated: &str,
    message_id: &str,
    pad: usize,
) -> Vec<u8> {
    let mut footer = String::new();
    let line =
        "This message and any attachments are confidential and intended solely for the addressee. ";
    while footer.len() < pad {
        footer.push_str(line);
        footer.push_str("\r\n");
    }
    format!(
        "From: Acme AMC Status <status@acme-amc.example>\r\n\
         To: orders@lender.example\r\n\
         Subject: Order {order} - {status}\r\n\
         Date: Mon, 23 Nov 2026 09:14:00 -0600\r\n\
         Message-ID: <{message_id}>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         Hello,\r\n\r\nThe status of your appraisal order has changed.\r\n\r\n\
         Order #: {order}\r\n\
         Status: {status}\r\n\
         Updated: {updated}\r\n\
         Fee: $525.00\r\n\r\nAcme AMC\r\n{footer}"
    )
    .into_bytes()
}

/// A message no vendor parser accepts.
pub fn unknown_sender(n: u32) -> Vec<u8> {
    format!(
        "From: News <news@mortgage-weekly.example>\r\nTo: orders@lender.example\r\n\
         Subject: Weekly digest {n}\r\nDate: Tue, 24 Nov 2026 07:00:00 +0000\r\n\
         Message-ID: <weekly-{n}@mortgage-weekly.example>\r\n\r\nRates and regulation.\r\n"
    )
    .into_bytes()
}

/// Broken MIME: a multipart whose boundary never appears, a header with no colon.
pub fn malformed(n: u32) -> Vec<u8> {
    format!(
        "From: status@acme-amc.example\r\nSubject: Order {n}\r\nThis header has no colon\r\n\
         Content-Type: multipart/mixed; boundary=\"never-used\"\r\n\r\n\
         --wrong-boundary\r\n\x7f garbage =?utf-8?q?broken\r\n"
    )
    .into_bytes()
}

/// `count` Acme emails for distinct orders walking through statuses, with
/// deterministic message IDs. Returns (messages, expected final status per order).
pub fn acme_batch(count: u32, pad: usize) -> Vec<Vec<u8>> {
    const STATUSES: [&str; 4] = [
        "Accepted",
        "Inspection Scheduled",
        "Inspection Complete",
        "Report Delivered",
    ];
    (0..count)
        .map(|i| {
            let order = 50_000 + i / 4;
            let step = (i % 4) as usize;
            let minute = step * 10;
            acme_padded(
                order,
                STATUSES[step],
                &format!("11/23/2026 09:{minute:02} AM"),
                &format!("bulk-{i}@acme-amc.example"),
                pad,
            )
        })
        .collect()
}
