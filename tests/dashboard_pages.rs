//! Every dashboard page in headless Chromium against the real `serve`, on a
//! seeded database (the demo's four vendors with policy `flag`, plus hostile
//! mail): the figures each page shows are the database's, the pages fit a
//! phone and a desktop, and script payloads from vendors stay text.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod dashboard_support;
mod support;

use std::path::PathBuf;

use dashboard_support::{
    ADMIN_TOKEN, Browser, FIELD_PAYLOAD, FILE_PAYLOAD, INERT, READ_TOKEN, STATUS_PAYLOAD,
    SUBJECT_PAYLOAD, Serve, seeded,
};
use serde_json::json;
use support::db::count;

fn text_of(b: &mut Browser, selector: &str) -> String {
    b.eval(&format!(
        "(document.querySelector({}) || {{innerText: ''}}).innerText.trim()",
        serde_json::to_string(selector).unwrap()
    ))
    .as_str()
    .unwrap()
    .to_string()
}

fn number(s: &str) -> i64 {
    s.split(|c: char| !c.is_ascii_digit())
        .find(|p| !p.is_empty())
        .unwrap_or_else(|| panic!("no number in {s:?}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_page_shows_the_databases_figures() {
    let (cfg, base) = seeded();
    let db = cfg.database();
    let _serve = Serve::start(&cfg, &base).await;
    // A webhook delta for order 48213, so its timeline has all three sources.
    let r = support::http::client()
        .post(format!("{base}/v1/hooks/acme-appraisal"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .header("webhook-id", "wh-48213-1")
        .body(r#"{"order": "48213", "status": "ACPT", "at": "2026-11-21T10:00:00Z"}"#)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "webhook intake: {}", r.status());
    let mut b = Browser::launch();

    // Not signed in: every page sends the browser to the sign-in form.
    b.goto(&format!("{base}/drifts"));
    assert_eq!(b.eval("location.pathname"), json!("/signin"));
    b.sign_in(&base, READ_TOKEN);

    // Vendors at a glance: each card's figures are the database's.
    b.goto(&format!("{base}/"));
    let vendors: Vec<String> = serde_json::from_value(
        b.eval("Array.from(document.querySelectorAll('[data-vendor]')).map(e => e.dataset.vendor)"),
    )
    .unwrap();
    assert_eq!(vendors.len(), 4, "{vendors:?}");
    let mut total_open = 0;
    for v in &vendors {
        let card = format!("[data-vendor='{v}']");
        let open = count(
            &db,
            &format!("SELECT count(*) FROM drifts WHERE vendor = '{v}' AND closed_at IS NULL"),
        )
        .await;
        let quarantined = count(
            &db,
            &format!(
                "SELECT count(*) FROM messages WHERE vendor = '{v}' AND disposition = 'quarantined'"
            ),
        )
        .await;
        let rows = count(&db, &format!("SELECT coalesce((SELECT row_count FROM key_frames WHERE vendor = '{v}' ORDER BY id DESC LIMIT 1), -1)")).await;
        let outcome = count(
            &db,
            &format!("SELECT count(*) FROM reconcile_runs WHERE vendor = '{v}' AND outcome = 'ok'"),
        )
        .await;
        assert_eq!(
            number(&text_of(
                &mut b,
                &format!("{card} [data-field=open-drifts]")
            )),
            open,
            "{v} open drifts"
        );
        assert_eq!(
            number(&text_of(
                &mut b,
                &format!("{card} [data-field=quarantined]")
            )),
            quarantined,
            "{v} quarantined"
        );
        let kf = text_of(&mut b, &format!("{card} [data-field=last-key-frame]"));
        if rows >= 0 {
            assert!(kf.contains(&format!("{rows} rows")), "{v} key frame: {kf}");
        } else {
            assert_eq!(kf, "never", "{v} has no key frame");
        }
        if outcome > 0 {
            assert_eq!(
                text_of(&mut b, &format!("{card} [data-field=guard]")),
                "ok",
                "{v} guard"
            );
        }
        total_open += open;
    }
    assert!(total_open > 0, "the seed has open drifts");

    // Drifts: all open ones, worst kind first; a filter narrows them.
    b.goto(&format!("{base}/drifts"));
    assert_eq!(
        number(&text_of(&mut b, "[data-field=drift-count]")),
        total_open
    );
    let kinds: Vec<String> = serde_json::from_value(b.eval(
        "Array.from(document.querySelectorAll('[data-drift] .kind')).map(e => e.textContent)",
    ))
    .unwrap();
    let rank = |k: &str| {
        [
            "missing_local",
            "status_mismatch",
            "missing_remote",
            "field_mismatch",
        ]
        .iter()
        .position(|x| *x == k)
        .unwrap()
    };
    assert!(
        kinds.windows(2).all(|w| rank(&w[0]) <= rank(&w[1])),
        "worst first: {kinds:?}"
    );
    assert_eq!(
        b.eval("document.querySelectorAll('form.action').length"),
        json!(0),
        "a reader sees no action"
    );
    b.goto(&format!(
        "{base}/drifts?vendor=acme-appraisal&kind=field_mismatch"
    ));
    let want = count(&db, "SELECT count(*) FROM drifts WHERE vendor = 'acme-appraisal' AND kind = 'field_mismatch' AND closed_at IS NULL").await;
    assert_eq!(number(&text_of(&mut b, "[data-field=drift-count]")), want);
    b.goto(&format!("{base}/drifts?cause=missed_email"));
    let want = count(
        &db,
        "SELECT count(*) FROM drifts WHERE cause = 'missed_email' AND closed_at IS NULL",
    )
    .await;
    assert!(want > 0 && want < total_open, "the seed has several causes");
    assert_eq!(number(&text_of(&mut b, "[data-field=drift-count]")), want);
    b.goto(&format!("{base}/drifts?kind=sideways"));
    assert!(
        text_of(&mut b, "main").contains("kind"),
        "a bad filter is refused, saying which"
    );
    b.goto(&format!("{base}/drifts?min_age_days=30"));
    assert_eq!(
        number(&text_of(&mut b, "[data-field=drift-count]")),
        0,
        "nothing in the seed is 30 days old"
    );

    // Quarantine: every quarantined message, with its reason and decoded views.
    b.goto(&format!("{base}/quarantine"));
    let q = count(
        &db,
        "SELECT count(*) FROM messages WHERE disposition = 'quarantined'",
    )
    .await;
    assert_eq!(number(&text_of(&mut b, "[data-field=quarantine-count]")), q);
    assert_eq!(
        b.eval("document.querySelectorAll('[data-message] [data-field=reason]').length"),
        json!(q)
    );
    assert_eq!(b.eval("document.querySelectorAll('[data-message] details dl.decoded, [data-message] details p.bad').length"), json!(q));

    // One order's timeline: its email deltas, the vendor's key frames, its drifts.
    b.goto(&format!("{base}/orders/acme-appraisal/48213"));
    let emails = count(&db, "SELECT count(*) FROM deltas WHERE vendor = 'acme-appraisal' AND order_ref = '48213' AND source = 'email'").await;
    assert!(emails > 0);
    assert_eq!(
        b.eval("document.querySelectorAll('li[data-kind=email]').length"),
        json!(emails)
    );
    let webhook = text_of(&mut b, "li[data-kind=webhook] .from");
    assert!(webhook.contains("webhook-id wh-48213-1"), "{webhook}");
    assert_eq!(
        b.eval("document.querySelectorAll('li[data-kind=webhook]').length"),
        json!(1)
    );
    let frames = count(
        &db,
        "SELECT count(*) FROM key_frames WHERE vendor = 'acme-appraisal'",
    )
    .await;
    assert_eq!(
        b.eval("document.querySelectorAll(\"li[data-kind='key frame']\").length"),
        json!(frames)
    );
    let drifts = count(
        &db,
        "SELECT count(*) FROM drifts WHERE vendor = 'acme-appraisal' AND order_ref = '48213'",
    )
    .await;
    assert!(
        b.eval("document.querySelectorAll('li[data-kind=drift]').length")
            .as_i64()
            .unwrap()
            >= drifts
    );
    assert!(b.eval("document.querySelector('li[data-kind=email] .from a').getAttribute('href').startsWith('/messages/')") == json!(true));
    // Times on one axis, in order.
    let times: Vec<String> = serde_json::from_value(b.eval("Array.from(document.querySelectorAll('ol.timeline .t time')).map(t => t.getAttribute('datetime'))")).unwrap();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    // A message: decoded parts and the raw mail as text.
    let id = count(
        &db,
        "SELECT min(id) FROM messages WHERE vendor = 'acme-appraisal' AND disposition = 'parsed'",
    )
    .await;
    b.goto(&format!("{base}/messages/{id}"));
    assert_eq!(text_of(&mut b, "[data-field=disposition]"), "parsed");
    assert!(text_of(&mut b, "[data-field=raw]").contains("Message-ID:"));
    assert!(text_of(&mut b, "[data-field=text]").contains("Order #"));

    // Key-frame history: one row per key frame.
    b.goto(&format!("{base}/vendors/acme-appraisal"));
    assert_eq!(
        b.eval("document.querySelectorAll('[data-key-frame]').length"),
        json!(frames)
    );

    // Reports: today's report text.
    b.goto(&format!("{base}/reports"));
    assert!(text_of(&mut b, "[data-field=report]").contains("open drift"));

    // The token never shows in a page or a URL, and scripts cannot read the cookie.
    assert!(!b.dom().contains(READ_TOKEN));
    assert_eq!(b.eval("document.cookie"), json!(""));
}

#[tokio::test(flavor = "multi_thread")]
async fn vendor_script_payloads_stay_text() {
    let (cfg, base) = seeded();
    let db = cfg.database();
    let _serve = Serve::start(&cfg, &base).await;
    let mut b = Browser::launch();
    b.sign_in(&base, ADMIN_TOKEN);
    let mut pages = vec![
        "/".to_string(),
        "/quarantine".into(),
        "/drifts".into(),
        "/reports".into(),
    ];
    pages.push("/orders/acme-appraisal/48292".into());
    // Error pages echo what they could not use, as text.
    pages.push("/drifts?kind=%3Cscript%3Ewindow.__pwned%3D1%3C%2Fscript%3E".into());
    pages.push(
        "/orders/acme-appraisal/%3Cimg%20src%3Dx%20onerror%3D%22window.__pwned%3D2%22%3E".into(),
    );
    for m in [
        "hostile-subject",
        "hostile-status",
        "hostile-field",
        "hostile-file",
    ] {
        let id = count(
            &db,
            &format!("SELECT id FROM messages WHERE message_id LIKE '%{m}@%'"),
        )
        .await;
        pages.push(format!("/messages/{id}"));
    }
    let mut seen = String::new();
    for p in &pages {
        eprintln!("checking {p}");
        b.goto(&format!("{base}{p}"));
        // Open every <details> so decoded views are rendered too.
        b.eval("document.querySelectorAll('details').forEach(d => d.open = true); true");
        assert_eq!(
            b.eval(INERT),
            json!(true),
            "{p}: a payload became live markup:\n{}",
            b.dom()
        );
        seen.push_str(b.eval("document.body.innerText").as_str().unwrap());
    }
    // Each payload is on a page, as the text it is.
    for payload in [SUBJECT_PAYLOAD, STATUS_PAYLOAD, FIELD_PAYLOAD, FILE_PAYLOAD] {
        assert!(seen.contains(payload), "{payload} not shown as text");
    }
    // A right-to-left override (U+202E) in an order ref would show the rest
    // of its line reversed: the page shows it as U+FFFD.
    b.goto(&format!(
        "{base}/orders/acme-appraisal/48213%E2%80%AEdetelpmoc"
    ));
    let text = b.eval("document.body.innerText");
    let text = text.as_str().unwrap();
    assert!(text.contains("48213\u{fffd}detelpmoc"), "{text}");
    assert!(!text.contains('\u{202e}'), "{text}");
}

/// Phone (375 px) and desktop (1280 px) renderings of the vendors, drifts
/// and an order's timeline; none scrolls sideways. Saved to target/tmp;
/// scripts/screenshot-dashboard.sh copies them to docs/.
#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_fits_a_phone_and_a_desktop() {
    let (cfg, base) = seeded();
    let _serve = Serve::start(&cfg, &base).await;
    let mut b = Browser::launch();
    b.sign_in(&base, ADMIN_TOKEN);
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    for (page, name) in [
        ("/", "vendors"),
        ("/drifts", "drifts"),
        ("/orders/acme-appraisal/48213", "order"),
        ("/quarantine", "quarantine"),
    ] {
        for (width, device) in [(375, "phone"), (1280, "desktop")] {
            let png = out.join(format!("dashboard-{name}-{device}.png"));
            b.screenshot(&format!("{base}{page}"), width, &png);
            assert!(
                std::fs::metadata(&png).unwrap().len() > 10_000,
                "{} is empty",
                png.display()
            );
        }
    }
}
