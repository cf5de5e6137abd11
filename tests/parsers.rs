//! The parser toolkit as a user meets it: shipped fixtures, readable failures,
//! clear rule-file errors, sender checks, hot reload, robustness on real mail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use driftwatch::fixtures::{Verdict, discover, run_one};
use driftwatch::model::Status;
use driftwatch::parse::{Registry, RegistryOptions};
use support::app::{copy_shipped_parsers, maildir_config, parsers_dir};
use tokio_util::sync::CancellationToken;

fn shipped_registry() -> Registry {
    driftwatch::parse::load_dir(&parsers_dir(), RegistryOptions::default())
        .expect("shipped parsers load")
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

#[test]
fn every_shipped_fixture_passes() {
    let registry = shipped_registry();
    let files = discover(&fixtures_dir(), None).unwrap();
    // The runner really ran cases, for more than one vendor.
    assert!(files.len() >= 3, "only {} fixtures found", files.len());
    let mut failures = Vec::new();
    for f in &files {
        let r = run_one(f, &registry, false);
        if !matches!(r.verdict, Verdict::Pass) {
            failures.push(format!("{}: {:?}", f.display(), r.verdict));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_wrong_expectation_fails_with_a_readable_diff() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures_dir().join("acme-appraisal/02-acme-48213-scheduled.eml");
    let eml = dir.path().join("case.eml");
    std::fs::copy(&src, &eml).unwrap();
    let expected = std::fs::read_to_string(src.with_extension("expected.json")).unwrap();
    std::fs::write(
        eml.with_extension("expected.json"),
        expected.replace("\"scheduled\"", "\"completed\""),
    )
    .unwrap();
    let r = run_one(&eml, &shipped_registry(), false);
    let Verdict::Fail(diff) = r.verdict else {
        panic!("expected a failure, got {:?}", r.verdict)
    };
    assert!(diff.contains("-       \"status\": \"completed\""), "{diff}");
    assert!(diff.contains("+       \"status\": \"scheduled\""), "{diff}");

    // --update records the current result, after which it passes.
    assert!(matches!(
        run_one(&eml, &shipped_registry(), true).verdict,
        Verdict::Updated
    ));
    assert!(matches!(
        run_one(&eml, &shipped_registry(), false).verdict,
        Verdict::Pass
    ));
}

fn rule_error(name: &str, text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name), text).unwrap();
    let errors = driftwatch::parse::load_dir(dir.path(), RegistryOptions::default())
        .err()
        .expect("rule file must be refused");
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors[0].to_string()
}

const GOOD: &str = r#"vendor = "v"
version = 1
[match]
senders = ["*@v.example"]
[[extract]]
in = "text"
pattern = 'Order (?P<order_ref>\d+): (?P<status>\w+)'
[status_map]
"Done" = "completed"
"#;

#[test]
fn bad_rule_files_name_the_file_the_key_and_the_reason() {
    // The base file is fine.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("v.toml"), GOOD).unwrap();
    assert!(driftwatch::parse::load_dir(dir.path(), RegistryOptions::default()).is_ok());

    let e = rule_error(
        "bad-regex.toml",
        &GOOD.replace(r"(?P<order_ref>\d+)", r"(?P<order_ref>\d+"),
    );
    assert!(
        e.contains("bad-regex.toml:7: key `extract[0].pattern`: invalid regex"),
        "{e}"
    );

    let e = rule_error(
        "bad-type.toml",
        &format!("{GOOD}[fields.fee]\ntype = \"currency\"\n"),
    );
    assert!(
        e.contains("bad-type.toml:11")
            && e.contains("fields.fee.type")
            && e.contains("unknown variant `currency`"),
        "{e}"
    );

    let e = rule_error(
        "bad-status.toml",
        &GOOD.replace("\"Done\" = \"completed\"", "\"Done\" = \"finished\""),
    );
    assert!(
        e.contains("bad-status.toml:9: key `status_map.Done`: unknown status `finished`"),
        "{e}"
    );

    let e = rule_error("missing.toml", &GOOD.replace("version = 1\n", ""));
    assert!(
        e.contains("missing.toml") && e.contains("missing field `version`"),
        "{e}"
    );

    let e = rule_error(
        "no-order.toml",
        &GOOD.replace("(?P<order_ref>\\d+)", "(\\d+)"),
    );
    assert!(
        e.contains("no-order.toml") && e.contains("order_ref"),
        "{e}"
    );
}

fn acme(order: u32, status: &str, auth: Option<&str>, id: &str) -> Vec<u8> {
    let mut m = String::new();
    if let Some(a) = auth {
        m.push_str(&format!("Authentication-Results: {a}\n"));
    }
    m.push_str(&format!(
        "From: Acme AMC Status <status@acme-amc.example>\nTo: orders@lender.example\n\
         Subject: Order {order} - {status}\nDate: Tue, 24 Nov 2026 10:00:00 -0600\nMessage-ID: <{id}>\n\n\
         Order #: {order}\nStatus: {status}\nUpdated: 11/24/2026 09:58 AM\n"
    ));
    m.into_bytes()
}

#[tokio::test]
async fn a_spoofed_status_email_is_quarantined_not_applied() {
    let cfg = maildir_config(&parsers_dir(), "");
    let genuine = "mx.lender.example; dkim=pass header.d=acme-amc.example; dmarc=pass header.from=acme-amc.example";
    let forged = "mx.lender.example; dkim=fail (bad signature) header.d=acme-amc.example; dmarc=fail header.from=acme-amc.example";
    cfg.deliver("1", &acme(555, "Accepted", Some(genuine), "real@acme"));
    cfg.deliver("2", &acme(555, "Cancelled", Some(forged), "spoof@evil"));
    let app = cfg.app().await;
    app.ingest_once().await.unwrap();
    let order = app
        .store
        .order("acme-appraisal", "555")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        order.status,
        Some(Status::Accepted),
        "the forged cancel must not apply"
    );
    let q = app.store.quarantined(10).await.unwrap();
    assert_eq!(q.len(), 1);
    assert!(
        q[0].reason.as_deref().unwrap().contains("dkim=fail"),
        "{q:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_rule_file_takes_effect_without_restart_and_reparse_recovers_old_mail() {
    let parsers = tempfile::tempdir().unwrap();
    copy_shipped_parsers(parsers.path());
    let cfg = maildir_config(parsers.path(), "");
    cfg.deliver("1", &acme(601, "Awaiting Borrower Access", None, "a1@acme"));
    let app = cfg.app().await;
    let mut rx = app.pipeline.subscribe();
    let shutdown = CancellationToken::new();
    let serve = tokio::spawn({
        let (app, shutdown) = (app.clone(), shutdown.clone());
        async move { app.serve(shutdown).await }
    });
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|&n| n >= 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(app.store.message_counts().await.unwrap().quarantined, 1);

    // The vendor's new status word gets mapped; the running service picks it up.
    let rule = parsers.path().join("acme-appraisal.toml");
    let text = std::fs::read_to_string(&rule).unwrap();
    let text = text.replace("version = 1", "version = 2").replace(
        "\"On Hold\" = \"on_hold\"",
        "\"On Hold\" = \"on_hold\"\n\"Awaiting Borrower Access\" = \"on_hold\"",
    );
    std::fs::write(&rule, text).unwrap();
    let reloaded = async {
        loop {
            if app
                .pipeline
                .registry()
                .parsers()
                .iter()
                .any(|p| p.vendor() == "acme-appraisal" && p.version() == 2)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), reloaded)
        .await
        .expect("rule file change reloaded within 10 s");
    cfg.deliver("2", &acme(602, "Awaiting Borrower Access", None, "a2@acme"));
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|&n| n >= 2))
        .await
        .unwrap()
        .unwrap();
    let o = app
        .store
        .order("acme-appraisal", "602")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.status, Some(Status::OnHold));
    shutdown.cancel();
    serve.await.unwrap().unwrap();

    // The message quarantined under version 1 is recovered by reparse.
    let app = cfg.app().await;
    let registry = app.pipeline.registry();
    let opts = driftwatch::reparse::ReparseOptions {
        dry_run: true,
        ..Default::default()
    };
    let dry = driftwatch::reparse::run(&app.store, &registry, &opts, &|_, _| {})
        .await
        .unwrap();
    assert_eq!((dry.changed, dry.orders.len()), (1, 1));
    assert!(
        app.store
            .order("acme-appraisal", "601")
            .await
            .unwrap()
            .is_none(),
        "dry run writes nothing"
    );
    let opts = driftwatch::reparse::ReparseOptions::default();
    let real = driftwatch::reparse::run(&app.store, &registry, &opts, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(real.changed, 1);
    let o = app
        .store
        .order("acme-appraisal", "601")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.status, Some(Status::OnHold));
    assert_eq!(app.store.message_counts().await.unwrap().quarantined, 0);
    // Running it again changes nothing.
    let again = driftwatch::reparse::run(&app.store, &registry, &opts, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(again.changed, 0);
}

/// Every file of the public mail corpora goes through ingest: no panic, and
/// every one is accounted for.
#[tokio::test]
async fn real_world_mail_corpus_is_ingested_and_accounted_for() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    if !corpus.is_dir() {
        eprintln!("SKIP: no mail corpus at {} (CI has it)", corpus.display());
        return;
    }
    let cfg = maildir_config(&parsers_dir(), "");
    let mut stack = vec![corpus];
    let mut n = 0u64;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "eml") {
                n += 1;
                cfg.deliver(&format!("c{n}"), &std::fs::read(&p).unwrap());
            }
        }
    }
    assert!(n > 100, "corpus too small: {n}");
    let app = cfg.app().await;
    let r = app.ingest_once().await.unwrap();
    let o = &r[0].2;
    assert_eq!(o.fetched(), n, "every file fetched once: {o:?}");
    assert_eq!(o.archived + o.duplicates, n);
    let c = app.store.message_counts().await.unwrap();
    assert_eq!(c.parsed + c.quarantined + c.ignored + c.skipped, c.messages);
    assert_eq!(c.locations, n);
    eprintln!(
        "corpus: {n} files, {} distinct, {} quarantined",
        c.messages, c.quarantined
    );
}

/// `depth` message/rfc822 parts nested in one another under an Acme status
/// mail (50,000 levels is a 2 MB mail), built here rather than shipped.
fn nested_rfc822(depth: usize) -> Vec<u8> {
    let mut raw = String::from(
        "From: Acme <status@acme-amc.example>\r\nTo: orders@lender.example\r\n\
         Subject: Order 70012 - Inspection Scheduled\r\nDate: Tue, 24 Nov 2026 16:00:00 +0000\r\n\
         Message-ID: <nested@acme-amc.example>\r\nMIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n",
    );
    for _ in 0..depth {
        raw.push_str("From: a@b\r\nContent-Type: message/rfc822\r\n\r\n");
    }
    raw.push_str("From: a@b\r\nContent-Type: text/plain\r\n\r\nOrder: 70012\r\n");
    raw.into_bytes()
}

#[test]
fn a_deeply_nested_forward_cannot_overflow_the_stack() {
    let registry = shipped_registry();
    let raw = nested_rfc822(50_000);
    assert!(raw.len() > 2_000_000);
    // The ingest path (and `parsers explain`) on a thread with tokio's
    // default worker stack: before the nesting bound, dropping the parsed
    // tree of 50,000 messages aborted the process here.
    let (archived, explained) = std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn_scoped(s, || {
                let archived = driftwatch::ingest::prepare(
                    &registry,
                    driftwatch::model::RawMessage {
                        location: "INBOX".into(),
                        uid: 1,
                        body: driftwatch::model::MessageBody::Full(raw.clone()),
                        internal_date: None,
                    },
                );
                let explained = driftwatch::parse::explain(&raw, &registry, None);
                (archived, explained)
            })
            .unwrap()
            .join()
            .expect("the parse thread finished")
    });
    // Archived whole, with a disposition and its reason, never lost.
    assert!(archived.raw_complete);
    assert_eq!(archived.size, raw.len() as u64);
    assert_eq!(archived.sender.as_deref(), Some("status@acme-amc.example"));
    assert!(
        archived.disposition.as_str() == "parsed" || archived.reason.is_some(),
        "{:?}",
        archived.reason
    );
    assert!(explained.contains("status@acme-amc.example"), "{explained}");
}
