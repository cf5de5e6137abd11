//! The daily report under hostile input and on a phone, through the real
//! binary: anyone who can email the mailbox must not be able to bloat the
//! report, and the HTML part must fit a 375 px screen with no sideways
//! scrolling. The phone test renders in headless Chromium (Debian's
//! `chromium`, installed by scripts/install-chromium.sh, which
//! ./scripts/test.sh runs); without it the test fails, saying so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Each rendered part must stay under this many bytes on the hostile day
/// below (31 subjects of ~1 MB each). The worst case the bounds allow is
/// about 1.5 MB per part (see report/build.rs, `MAX_LISTED_CAP`).
const PART_BOUND: usize = 256 * 1024;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_driftwatch"));
    c.env_remove("DRIFTWATCH_LOG")
        .env_remove("DRIFTWATCH_DATA_DIR")
        .stdin(Stdio::null());
    c
}

fn run(config: &Path, args: &[&str]) -> Output {
    let out = bin().arg("-c").arg(config).args(args).output().unwrap();
    assert!(
        out.status.success() || out.status.code() == Some(3),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The demo, switched to policy `flag` so drifts stay open, then a day of
/// hostile mail: 31 unknown senders with ~1 MB subjects (one of them a
/// single unbroken word), and an export whose values are long.
fn hostile_day() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    std::fs::create_dir_all(&demo).unwrap();
    let cfg = demo.join("driftwatch.toml");
    // Written before the demo runs, so the demo keeps it (it never overwrites
    // an edited config).
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/driftwatch.toml"))
            .unwrap();
    std::fs::write(
        &cfg,
        shipped.replace("policy = \"fix\"", "policy = \"flag\""),
    )
    .unwrap();
    let out = bin().arg("demo").arg("--dir").arg(&demo).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let maildir = demo.join("Maildir/new");
    for i in 0..31 {
        let subject = if i == 0 {
            "x".repeat(1_000_000)
        } else {
            format!("Win big {i} ").repeat(1_000_000 / 11)
        };
        std::fs::write(
            maildir.join(format!("hostile-{i:02}")),
            format!(
                "From: Spammer {i} <spam{i}@bulk.example>\nTo: orders@lender.example\n\
                 Subject: {subject}\nDate: Tue, 24 Nov 2026 09:00:00 -0600\n\
                 Message-ID: <hostile-{i}@bulk.example>\n\nbuy now\n"
            ),
        )
        .unwrap();
    }
    run(&cfg, &["ingest", "--once"]);
    let export = dir.path().join("long.csv");
    let long_name = "Bartholomew-Featherstonehaugh-Cholmondeley-Marjoribanks".repeat(3);
    std::fs::write(
        &export,
        format!(
            "Order No,Status,Fee,Inspection Date,Appraiser\n\
             48213,INSP_DONE,525.00,11/27/2026,{long_name}\n\
             48214,DLVD,610.00,,Dana Whitfield\n\
             48215,INSP_SCHED,$520.00,11/30/2026,Priya Raman\n\
             48216,HOLD,450.00,12/02/2026,Sam Lee\n\
             48217,RCVD,380.00,,\n"
        ),
    )
    .unwrap();
    run(
        &cfg,
        &[
            "reconcile",
            "--vendor",
            "acme-appraisal",
            "--file",
            export.to_str().unwrap(),
        ],
    );
    (dir, cfg)
}

fn report(cfg: &Path, format: &str) -> String {
    String::from_utf8(run(cfg, &["report", "--format", format]).stdout).unwrap()
}

#[test]
fn a_day_of_megabyte_subjects_gives_a_bounded_report_that_says_what_it_cut() {
    let (_dir, cfg) = hostile_day();
    for format in ["html", "text", "json"] {
        let body = report(&cfg, format);
        eprintln!("{format} report: {} bytes", body.len());
        assert!(
            body.len() < PART_BOUND,
            "{format} report is {} bytes (bound {PART_BOUND})",
            body.len()
        );
        // Every hostile mail is counted and listed (31 + the demo's 3)...
        assert!(
            body.contains("(34)") || body.contains("\"total\": 34"),
            "{format}: quarantine total missing"
        );
        // ...each subject cut, with the cut said where it happened...
        assert!(
            body.contains("… [+999800 chars]"),
            "{format}: no cut marker"
        );
    }
    // ...and in a sentence at the top, with how much was left out.
    let text = report(&cfg, "text");
    let note = text
        .lines()
        .find(|l| l.contains("cut to keep this email small"))
        .expect("the text report says what it cut");
    assert!(note.contains("31 long values were cut"), "{note}");
    let json: serde_json::Value = serde_json::from_str(&report(&cfg, "json")).unwrap();
    assert_eq!(json["omitted"]["cut_strings"], 31);
    assert!(json["omitted"]["cut_chars"].as_u64().unwrap() > 30 * 999_000);
    assert!(report(&cfg, "html").contains("cut to keep this email small"));
}

const CHROME_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
];

/// A page that shows `html` in a frame exactly `width` px wide (a desktop
/// browser window cannot be narrower than 500 px; a frame is its own
/// viewport, so the report's media query sees `width`) and writes the
/// report's `scrollWidth` and viewport width into its title.
fn framed(html: &str, width: u32) -> String {
    let srcdoc = html
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!(
        "<!DOCTYPE html><html><head><title>-</title></head><body style=\"margin:0\">\
         <iframe id=\"r\" style=\"border:0;width:{width}px;height:2400px;display:block\" srcdoc=\"{srcdoc}\"></iframe>\
         <script>window.addEventListener('load',function(){{var d=document.getElementById('r').contentDocument;\
         document.title='scroll='+d.documentElement.scrollWidth+' viewport='+d.defaultView.innerWidth;}});</script>\
         </body></html>"
    )
}

fn chromium(profile: &Path, args: &[&str]) -> Output {
    Command::new("chromium")
        .args(CHROME_FLAGS)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stderr(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run chromium ({e}): install it with scripts/install-chromium.sh \
                 (./scripts/test.sh does); this test does not skip"
            )
        })
}

/// (scrollWidth, viewport width) of the report rendered at `width`, and a
/// screenshot at that width in `png`.
fn render(html: &str, width: u32, png: &Path) -> (u32, u32) {
    let work = tempfile::tempdir().unwrap();
    let page = work.path().join("page.html");
    std::fs::write(&page, framed(html, width)).unwrap();
    let url = format!("file://{}", page.display());
    let out = chromium(
        &work.path().join("profile"),
        &["--window-size=1300,2400", "--dump-dom", &url],
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    let title = dom
        .split("<title>")
        .nth(1)
        .and_then(|t| t.split("</title>").next())
        .unwrap_or_default()
        .to_string();
    let num = |key: &str| -> u32 {
        title
            .split(' ')
            .find_map(|kv| kv.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("chromium measured nothing (title {title:?})"))
    };
    let measured = (num("scroll="), num("viewport="));
    let out = chromium(
        &work.path().join("profile"),
        &[
            &format!("--window-size={width},2400"),
            &format!("--screenshot={}", png.display()),
            &url,
        ],
    );
    assert!(
        out.status.success() && png.exists(),
        "no screenshot at {width}"
    );
    measured
}

#[test]
fn the_html_report_fits_a_phone_and_a_desktop_without_sideways_scrolling() {
    let (_dir, cfg) = hostile_day();
    let html = report(&cfg, "html");
    // The day has every table the report draws, with long vendor strings.
    for section in ["By vendor", "Open drifts", "Quarantined mail"] {
        assert!(html.contains(section), "sample lacks {section}");
    }
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"));
    for (width, name) in [(375, "report-phone.png"), (1280, "report-desktop.png")] {
        let (scroll, viewport) = render(&html, width, &shots.join(name));
        assert_eq!(viewport, width, "the frame is the viewport");
        assert!(
            scroll <= viewport,
            "at {width} px the report is {scroll} px wide: it scrolls sideways"
        );
    }
}
