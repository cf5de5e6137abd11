//! The built-in demo: a config, a Maildir of sample vendor mail and the
//! shipped parsers, embedded in the binary so `driftwatch demo` runs anywhere
//! with no mail server.

use std::path::{Path, PathBuf};

use crate::{out, outln};

macro_rules! embed {
    ($($dest:literal => $src:literal),* $(,)?) => {
        &[$(($dest, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $src)) as &[u8])),*]
    };
}

/// The demo's own files: its config, sample mail and export.
const FILES: &[(&str, &[u8])] = embed! {
    "driftwatch.toml" => "demo/driftwatch.toml",
    "Maildir/new/01-acme-48213-accepted" => "demo/mail/01-acme-48213-accepted.eml",
    "Maildir/new/02-acme-48213-scheduled" => "demo/mail/02-acme-48213-scheduled.eml",
    "Maildir/new/03-acme-48214-delivered" => "demo/mail/03-acme-48214-delivered.eml",
    "Maildir/new/04-acme-48215-scheduled" => "demo/mail/04-acme-48215-scheduled.eml",
    "Maildir/new/05-acme-48215-accepted-late" => "demo/mail/05-acme-48215-accepted-late.eml",
    "Maildir/new/06-keystone-T7781" => "demo/mail/06-keystone-T7781.eml",
    "Maildir/new/07-newsletter-unknown-sender" => "demo/mail/07-newsletter-unknown-sender.eml",
    "Maildir/new/08-malformed" => "demo/mail/08-malformed.eml",
    "Maildir/new/09-acme-48213-scheduled-duplicate" => "demo/mail/09-acme-48213-scheduled-duplicate.eml",
    "Maildir/new/10-acme-48216-unmapped" => "demo/mail/10-acme-48216-unmapped.eml",
    "Maildir/new/11-pinnacle-daily-csv" => "demo/mail/11-pinnacle-daily-csv.eml",
    "Maildir/new/12-rivergate-digest" => "demo/mail/12-rivergate-digest.eml",
    "Maildir/new/13-keystone-daily-report" => "demo/mail/13-keystone-daily-report.eml",
    "exports/acme-orders-20261125.csv" => "demo/exports/acme-orders-20261125.csv",
};

/// Every shipped parser (`parsers/*.toml`) and fixture (`fixtures/<vendor>/…`),
/// listed by build.rs, so `parsers test` works in the demo directory.
const SHIPPED: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/shipped.rs"));

/// What [`materialize`] did with the files that were already there.
#[derive(Debug, Default)]
pub struct Written {
    pub config: PathBuf,
    /// Files that existed with different content: the user's edits, kept.
    pub kept: Vec<PathBuf>,
}

/// Writes the demo into `dir` (see [`write`]) and returns the config path.
pub fn materialize(dir: &Path) -> std::io::Result<PathBuf> {
    Ok(write(dir)?.config)
}

/// Writes the demo into `dir` and says where the config is. Keeps any
/// database already there (a second run shows that nothing is ingested
/// twice), and never overwrites a file whose content differs from the
/// shipped one: a config or parser the user edited stays as they left it,
/// and is listed in [`Written::kept`].
pub fn write(dir: &Path) -> std::io::Result<Written> {
    for sub in [
        "Maildir/tmp",
        "Maildir/new",
        "Maildir/cur",
        "parsers",
        "exports",
    ] {
        crate::private_files::create_dir(&dir.join(sub))?;
    }
    let mut written = Written {
        config: dir.join("driftwatch.toml"),
        kept: Vec::new(),
    };
    for (dest, bytes) in FILES.iter().chain(SHIPPED) {
        let path = dir.join(dest);
        match std::fs::read(&path) {
            Ok(existing) if existing == *dated(bytes) => continue,
            // Mail files are written once (rewriting would change their mtime,
            // the Maildir's arrival order); other files are kept if edited.
            Ok(_) => {
                if !dest.starts_with("Maildir/") {
                    written.kept.push(path);
                }
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if let Some(parent) = path.parent() {
            crate::private_files::create_dir(parent)?;
        }
        crate::private_files::write(&path, &dated(bytes))?;
    }
    Ok(written)
}

/// The demo's daily report mail is dated when the demo is written
/// (`{{DEMO_NOW}}`), so its key frame is this morning's, not one that grows
/// older (and "overdue") with every day since the demo shipped.
fn dated(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    const MARK: &[u8] = b"{{DEMO_NOW}}";
    match bytes.windows(MARK.len()).position(|w| w == MARK) {
        None => std::borrow::Cow::Borrowed(bytes),
        Some(at) => {
            let mut out = bytes[..at].to_vec();
            out.extend_from_slice(chrono::Utc::now().to_rfc2822().as_bytes());
            out.extend_from_slice(&bytes[at + MARK.len()..]);
            std::borrow::Cow::Owned(out)
        }
    }
}

/// `driftwatch demo`: write the demo, ingest its mail, show what came of it.
pub async fn run(dir: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let written =
        write(dir).with_context(|| format!("failed to write the demo into {}", dir.display()))?;
    let config_path = written.config;
    for p in &written.kept {
        outln!(
            "kept your edited {} (delete it to get the shipped version back)",
            p.display()
        )?;
    }
    let config = crate::config::Config::load(&config_path)?;
    outln!("demo config: {}\n", config_path.display())?;
    let app = crate::app::App::build(config).await?;

    outln!("== ingest: the demo Maildir")?;
    crate::cli::print_ingest(&app.ingest_once().await?)?;
    outln!()?;
    crate::cli::orders(&app.store, None, None, false).await?;
    let q = app.store.quarantined(20).await?;
    if !q.is_empty() {
        outln!("\nquarantined ({}):", q.len())?;
        for m in q {
            outln!(
                "  from {}: {}",
                crate::out::clean(m.sender.as_deref().unwrap_or("?")),
                crate::out::clean(m.reason.as_deref().unwrap_or(""))
            )?;
        }
    }

    outln!("\n== reconcile: acme-appraisal against its export (dry run first)")?;
    let opts = crate::reconcile::RunOptions {
        dry_run: true,
        ..Default::default()
    };
    let dry = crate::reconcile::run_once(&app.store, &app.config, "acme-appraisal", opts).await?;
    out!("{}", crate::reconcile::cli::render_summary(&dry))?;
    outln!()?;
    let run = crate::reconcile::run_once(
        &app.store,
        &app.config,
        "acme-appraisal",
        Default::default(),
    )
    .await?;
    out!("{}", crate::reconcile::cli::render_summary(&run))?;
    outln!()?;
    crate::cli::orders(&app.store, Some("acme-appraisal"), None, false).await?;

    // What `serve` does when a report mail is archived, here once by hand.
    outln!("\n== key frame by mail: keystone-title's daily open-orders report")?;
    let mail = crate::reconcile::run_once(
        &app.store,
        &app.config,
        "keystone-title",
        Default::default(),
    )
    .await?;
    out!("{}", crate::reconcile::cli::render_summary(&mail))?;
    // The day's report, as the morning email would show it (no mail server).
    outln!("\n== report: today so far\n")?;
    let settings = app.config.report_settings();
    let today = chrono::Utc::now()
        .with_timezone(&settings.timezone)
        .date_naive();
    let text = crate::report::cli::render(
        &app.store,
        &settings,
        Some(today),
        crate::report::cli::Format::Text,
    )
    .await?;
    out!("{text}")?;
    let html = crate::report::cli::render(
        &app.store,
        &settings,
        Some(today),
        crate::report::cli::Format::Html,
    )
    .await?;
    let reports = settings
        .output_dir
        .clone()
        .unwrap_or_else(|| dir.join("reports"));
    crate::private_files::create_dir(&reports)
        .with_context(|| format!("failed to create {}", reports.display()))?;
    let html_path = reports.join(format!("report-{today}.html"));
    crate::private_files::write(&html_path, html.as_bytes())
        .with_context(|| format!("failed to write {}", html_path.display()))?;
    outln!("\nHTML report: {}", html_path.display())?;

    outln!(
        "\nexplore: driftwatch -c {} orders <ORDER>\n         driftwatch -c {} drifts",
        config_path.display(),
        config_path.display()
    )?;
    outln!(
        "         driftwatch -c {} report --format html -o report.html",
        config_path.display()
    )?;
    Ok(())
}
