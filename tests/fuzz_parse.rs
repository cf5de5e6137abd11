//! Arbitrary bytes and mutated real emails through parse never panic, and
//! always come out with a disposition.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::OnceLock;

use driftwatch::ingest::prepare;
use driftwatch::model::{MessageBody, RawMessage};
use driftwatch::parse::{Registry, RegistryOptions, html_to_text};
use proptest::prelude::*;

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| {
        driftwatch::parse::load_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("parsers"),
            RegistryOptions::default(),
        )
        .expect("shipped parsers load")
    })
}

/// The shipped sample mail: the seeds mutations start from.
fn seeds() -> &'static Vec<Vec<u8>> {
    static S: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    S.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut out = Vec::new();
        for dir in ["demo/mail", "fixtures"] {
            let mut stack = vec![root.join(dir)];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).unwrap() {
                    let p = e.unwrap().path();
                    if p.is_dir() {
                        stack.push(p);
                    } else if p.extension().is_some_and(|x| x == "eml") {
                        out.push(std::fs::read(&p).unwrap());
                    }
                }
            }
        }
        assert!(out.len() >= 5);
        out
    })
}

fn run(raw: Vec<u8>) {
    let m = prepare(
        registry(),
        RawMessage {
            location: "x".into(),
            uid: 1,
            body: MessageBody::Full(raw),
            internal_date: None,
        },
    );
    // Parsed messages carry no reason; the others carry a reason and no deltas.
    match m.disposition.as_str() {
        "parsed" => assert!(m.reason.is_none()),
        _ => assert!(m.deltas.is_empty() && m.reason.is_some()),
    }
}

/// A quoted-printable part that is only a soft break before the closing
/// boundary: crates.io's decoder subtracts past zero there, which wraps in a
/// release build and panicked in a debug one (tests run debug builds). The
/// vendored decoder gives the release result in both.
#[test]
fn a_soft_break_right_before_the_boundary_is_read_as_the_release_build_reads_it() {
    let raw = b"From: Keystone Title <notifications@keystonetitle.example>\r\n\
        To: orders@lender.example\r\nSubject: Title order T-1 status update\r\n\
        MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b\"\r\n\r\n\
        --b\r\nContent-Type: text/plain; charset=us-ascii\r\n\
        Content-Transfer-Encoding: quoted-printable\r\n\r\n=\r\n--b--\r\n";
    let mail = driftwatch::parse::Mail::parse(raw, None).expect("the mail parses");
    // The byte loop's release build keeps the dash it cannot truncate.
    assert_eq!(mail.text(), "-");
    run(raw.to_vec());
}

const TOKENS: &[&[u8]] = &[
    b"\r\n\r\n",
    b"\n",
    b"--",
    b"=?utf-8?b?",
    b"=?iso-8859-1?q?=E9",
    b"?=",
    b"Content-Type: multipart/mixed; boundary=\"b\"\n",
    b"Content-Transfer-Encoding: base64\n",
    b"Content-Transfer-Encoding: quoted-printable\n",
    b"=\n",
    b"=ZZ",
    b"<td>",
    b"&#x",
    b"\xff\xfe",
    b"\x00",
    b"Order #: ",
    b"Status: ",
    b"Updated: 13/45/2026 99:99 PM\n",
    b"From: <>\n",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..4096)) {
        run(raw);
    }

    #[test]
    fn mutated_real_mail_never_panics(
        seed in 0usize..1000,
        edits in proptest::collection::vec((any::<u16>(), 0usize..TOKENS.len(), 0u8..4), 1..12),
    ) {
        let mut raw = seeds()[seed % seeds().len()].clone();
        for (pos, token, op) in edits {
            let at = if raw.is_empty() { 0 } else { usize::from(pos) % raw.len() };
            match op {
                0 => { raw.splice(at..at, TOKENS[token].iter().copied()); }
                1 => raw.truncate(at),
                2 => if at < raw.len() { raw[at] ^= 0x5a; },
                _ => { let end = (at + usize::from(pos % 64)).min(raw.len()); raw.drain(at..end); }
            }
        }
        run(raw);
    }

    #[test]
    fn html_to_text_never_panics(s in "\\PC{0,400}", tags in "[<>&;#x/!a-z0-9 é-]{0,300}") {
        let _ = html_to_text(&s);
        let _ = html_to_text(&tags);
    }
}
