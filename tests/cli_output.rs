//! The command line as a script or a terminal sees it, through the real
//! binary on the demo: closed pipes, exit codes, colour, JSON, and vendor
//! text that tries to drive the terminal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_driftwatch"));
    c.env_remove("DRIFTWATCH_LOG")
        .env_remove("NO_COLOR")
        .env_remove("DRIFTWATCH_CONFIG")
        .env_remove("DRIFTWATCH_DATA_DIR")
        .stdin(Stdio::null());
    c
}

/// `driftwatch -c CONFIG ARGS`, output captured.
fn run(config: &Path, args: &[&str]) -> Output {
    bin().arg("-c").arg(config).args(args).output().unwrap()
}

/// Writes the demo into a temp dir and runs it once (ingest, reconcile, fix).
fn demo() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let out = bin().arg("demo").arg("--dir").arg(&demo).output().unwrap();
    assert!(
        out.status.success(),
        "demo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir, demo.join("driftwatch.toml"))
}

/// Runs `ARGS` with stdout a pipe whose reader has already gone, as with
/// `driftwatch orders | head -1` once head has its line.
fn run_into_closed_pipe(config: &Path, args: &[&str]) -> Output {
    let mut child = bin()
        .arg("-c")
        .arg(config)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

#[test]
fn a_closed_pipe_ends_every_printing_command_quietly_with_exit_0() {
    let (_dir, cfg) = demo();
    let mail = cfg.with_file_name("Maildir").join("new");
    let mail = std::fs::read_dir(&mail)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mail = mail.to_str().unwrap();
    for args in [
        &["parsers", "explain", mail][..],
        &["orders"],
        &["orders", "--json"],
        &["orders", "48213"],
        &["parsers", "test"],
        &["tail"],
        &["drifts"],
        &["quarantine", "list"],
        &["report"],
        &["report", "--format", "html"],
        &["check-config"],
        &["completions", "bash"],
        &["man"],
    ] {
        let out = run_into_closed_pipe(&cfg, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

#[test]
fn exit_codes_tell_usage_errors_failures_and_refusals_apart() {
    let (dir, cfg) = demo();
    assert_eq!(
        run(&cfg, &["orders", "--no-such-flag"]).status.code(),
        Some(2)
    );
    assert_eq!(
        run(&dir.path().join("missing.toml"), &["orders"])
            .status
            .code(),
        Some(1)
    );
    // A header-only export: the guard refuses it (min_rows), nothing changes.
    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, "Order No,Status,Fee,Inspection Date,Appraiser\n").unwrap();
    let out = run(
        &cfg,
        &[
            "reconcile",
            "--vendor",
            "acme-appraisal",
            "--file",
            empty.to_str().unwrap(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("REFUSED"));
    assert_eq!(run(&cfg, &["orders"]).status.code(), Some(0));
}

#[test]
fn logs_have_no_colour_codes_when_stderr_is_not_a_terminal() {
    let (_dir, cfg) = demo();
    let out = bin()
        .arg("-c")
        .arg(&cfg)
        .args(["ingest", "--once"])
        .env("DRIFTWATCH_LOG", "debug")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!out.stderr.is_empty(), "debug logging said nothing");
    assert!(
        !out.stderr.contains(&0x1b),
        "ANSI escape in redirected logs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A crafted subject, sender name and field value full of terminal
/// control sequences: set the window title, clear the screen, recolour.
const EVIL: &str = "\u{1b}]0;pwned\u{7}\u{1b}[2J\u{1b}[31mred\u{9b}1m\r";

#[test]
fn vendor_escape_sequences_never_reach_the_terminal() {
    let (dir, cfg) = demo();
    let maildir = cfg.parent().unwrap().join("Maildir/new");
    // An unknown sender: quarantined with the subject as sent.
    std::fs::write(
        maildir.join("90-evil-unknown"),
        format!(
            "From: \"Evil{EVIL}\" <evil@attacker.example>\nTo: orders@lender.example\n\
             Subject: hello {EVIL} there\nDate: Tue, 24 Nov 2026 09:00:00 -0600\n\
             Message-ID: <evil-1@attacker.example>\n\n{EVIL} body\n"
        ),
    )
    .unwrap();
    // A real vendor mail whose field carries the sequence into the order view.
    std::fs::write(
        maildir.join("91-evil-field"),
        format!(
            "From: Acme AMC Status <status@acme-amc.example>\nTo: orders@lender.example\n\
             Subject: Order 48299 - Accepted\nDate: Tue, 24 Nov 2026 10:00:00 -0600\n\
             Message-ID: <48299.accepted@acme-amc.example>\n\n\
             Order #: 48299\nStatus: Accepted\nUpdated: 11/24/2026 10:00 AM\n\
             Appraiser: Mallory {EVIL}\nFee: $100.00\n"
        ),
    )
    .unwrap();
    let out = run(&cfg, &["ingest", "--once"]);
    assert!(out.status.success());
    // And an export whose value carries it into a drift.
    let export = dir.path().join("evil.csv");
    std::fs::write(
        &export,
        format!(
            "Order No,Status,Fee,Inspection Date,Appraiser\n\
             48213,INSP_DONE,525.00,11/27/2026,José Martínez\n\
             48214,DLVD,610.00,,Dana Whitfield\n\
             48215,INSP_SCHED,$520.00,11/30/2026,Priya Raman\n\
             48216,HOLD,450.00,12/02/2026,Sam Lee\n\
             48217,RCVD,380.00,,\n\
             48299,ACPT,100.00,,\"Eve {EVIL}\"\n"
        ),
    )
    .unwrap();
    let quarantined = String::from_utf8(run(&cfg, &["quarantine", "list", "--json"]).stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|q| q["sender"] == "evil@attacker.example")
        .expect("the crafted mail is quarantined");
    let id = quarantined["id"].to_string();
    assert!(quarantined["subject"].as_str().unwrap().contains('\u{1b}'));

    let mut seen = 0;
    for args in [
        &["quarantine", "list"][..],
        &["quarantine", "show", &id],
        &["orders"],
        &["orders", "48299"],
        &["orders", "--json"],
        &["tail"],
        &[
            "reconcile",
            "--vendor",
            "acme-appraisal",
            "--file",
            export.to_str().unwrap(),
        ],
        &["drifts"],
        &["drifts", "--json"],
        &["report"],
        &["report", "--format", "json"],
    ] {
        let out = run(&cfg, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let bad: Vec<char> = text
            .chars()
            .filter(|c| c.is_control() && *c != '\n')
            .collect();
        assert!(
            bad.is_empty(),
            "{args:?} printed control characters {bad:?}"
        );
        if text.contains("pwned") {
            seen += 1;
        }
    }
    // The text was shown (made harmless), not dropped.
    assert!(
        seen >= 8,
        "the crafted text appeared in only {seen} outputs"
    );
}

#[test]
fn json_outputs_carry_real_json_values() {
    let (dir, cfg) = demo();
    // drifts --json: values are JSON values, not strings holding JSON.
    let out = run(&cfg, &["drifts", "--json"]);
    let drifts: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let status = drifts
        .iter()
        .find(|d| d["kind"] == "status_mismatch")
        .unwrap();
    assert_eq!(status["remote_value"], "in_progress");
    assert_eq!(status["local_value"], "scheduled");
    let fee = drifts.iter().find(|d| d["field"] == "fee").unwrap();
    assert_eq!(fee["remote_value"], serde_json::json!(520.0));
    assert!(drifts.iter().any(|d| d["local_value"].is_null()));

    // reconcile --json: one object with the summary's figures.
    let export = cfg
        .parent()
        .unwrap()
        .join("exports/acme-orders-20261125.csv");
    let copy = dir.path().join("copy.csv");
    let mut csv = std::fs::read_to_string(&export).unwrap();
    csv.push_str("48300,RCVD,1.00,,\n");
    std::fs::write(&copy, csv).unwrap();
    let out = run(
        &cfg,
        &[
            "reconcile",
            "--vendor",
            "acme-appraisal",
            "--dry-run",
            "--json",
            "--file",
            copy.to_str().unwrap(),
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "ok");
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["orders_remote"], 6);
    assert_eq!(v["drifts"], 1);
    assert_eq!(v["sample"][0]["order_ref"], "48300");

    // quarantine list --json: one object per line.
    let out = run(&cfg, &["quarantine", "list", "--json"]);
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(
        lines
            .iter()
            .all(|q| q["id"].is_i64() && q["reason"].is_string())
    );

    // report --history --json: the ledger as JSON lines (the demo wrote none).
    let out = run(&cfg, &["report", "--history", "--json"]);
    assert!(out.status.success());
    for l in String::from_utf8(out.stdout).unwrap().lines() {
        let _: serde_json::Value = serde_json::from_str(l).unwrap();
    }
}

#[test]
fn tables_keep_their_columns_aligned_with_long_values() {
    let (_dir, cfg) = demo();
    let text = String::from_utf8(run(&cfg, &["orders"]).stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // "Pending Consumer Verification" is the longest vendor status: the
    // column after it starts at the same place on every row.
    let col = lines[0].find("AS OF").unwrap();
    let long = lines
        .iter()
        .find(|l| l.contains("Pending Consumer Verification"))
        .unwrap();
    for l in &lines[1..lines.len() - 1] {
        let prefix: String = l.chars().take(col).collect();
        let next: String = l.chars().skip(col).take(4).collect();
        assert!(next.starts_with("202"), "misaligned: {l:?}\n{long}");
        assert!(prefix.ends_with("  "), "no gap before the column: {l:?}");
    }
}

#[test]
fn completions_and_the_man_page_come_from_the_command_definitions() {
    let (_dir, cfg) = demo();
    let bash = String::from_utf8(run(&cfg, &["completions", "bash"]).stdout).unwrap();
    assert!(bash.contains("_driftwatch()"), "{bash}");
    for sub in ["reconcile", "quarantine", "--dry-run", "--send-due"] {
        assert!(bash.contains(sub), "bash completion lacks {sub}");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = run(&cfg, &["completions", shell]);
        assert!(out.status.success() && !out.stdout.is_empty(), "{shell}");
    }
    let man = String::from_utf8(run(&cfg, &["man"]).stdout).unwrap();
    assert!(
        man.starts_with(".ie") || man.contains(".TH driftwatch"),
        "{man}"
    );
    assert!(man.contains("reconcile") && man.contains("Exit codes"));
}

#[test]
fn parsers_test_passes_in_the_demo_directory_and_export_writes_where_it_reads() {
    let (dir, cfg) = demo();
    // From another working directory, as a user would after `cd`.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let parsers_test = || {
        bin()
            .current_dir(&elsewhere)
            .arg("-c")
            .arg(&cfg)
            .args(["parsers", "test"])
            .output()
            .unwrap()
    };
    let out = parsers_test();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let shipped = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("parsers"))
        .unwrap()
        .count();
    let demo_parsers = std::fs::read_dir(cfg.parent().unwrap().join("parsers"))
        .unwrap()
        .count();
    assert_eq!(demo_parsers, shipped, "the demo ships every parser");

    // Export a quarantined message by a relative name: it lands in the
    // fixtures folder `parsers test` reads, not in the working directory.
    let q = String::from_utf8(run(&cfg, &["quarantine", "list", "--json"]).stdout).unwrap();
    let id = q
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|q| q["vendor"] == "acme-appraisal")
        .unwrap()["id"]
        .to_string();
    let out = bin()
        .current_dir(&elsewhere)
        .arg("-c")
        .arg(&cfg)
        .args([
            "quarantine",
            "export",
            &id,
            "--to",
            "acme-appraisal/new.eml",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = cfg
        .parent()
        .unwrap()
        .join("fixtures/acme-appraisal/new.eml");
    assert!(written.exists());
    assert!(!elsewhere.join("acme-appraisal/new.eml").exists());
    // parsers test now finds it (no expectation yet: MISSING, exit 1).
    let out = parsers_test();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("MISSING") && text.contains("new.eml"),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn the_demo_keeps_a_config_and_parsers_the_user_edited() {
    let (_dir, cfg) = demo();
    let parser = cfg.parent().unwrap().join("parsers/acme-appraisal.toml");
    let mut edited_cfg = std::fs::read_to_string(&cfg).unwrap();
    edited_cfg.push_str("\n# my edit\n");
    std::fs::write(&cfg, &edited_cfg).unwrap();
    let mut edited_parser = std::fs::read_to_string(&parser).unwrap();
    edited_parser.push_str("\n# my parser edit\n");
    std::fs::write(&parser, &edited_parser).unwrap();
    let out = bin()
        .arg("demo")
        .arg("--dir")
        .arg(cfg.parent().unwrap())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("kept your edited") && text.contains("acme-appraisal.toml"));
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), edited_cfg);
    assert_eq!(std::fs::read_to_string(&parser).unwrap(), edited_parser);
}
