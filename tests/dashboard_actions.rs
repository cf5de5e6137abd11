//! The dashboard's admin actions from a real browser against `serve`: each
//! works with the `admin` scope, is recorded (who, when, what) and shown in
//! the order's timeline and the day's report, and is refused without
//! `admin`, without the session's CSRF token, or from another site.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod dashboard_support;
mod support;

use chrono::{Duration, Utc};
use dashboard_support::{ADMIN_TOKEN, Browser, READ_TOKEN, Serve, acme_mail, seeded};
use serde_json::json;
use support::db::count;

/// POSTs a form from inside the page (so the browser sends the session
/// cookie and this site's Origin) and returns the status.
fn post_status(b: &mut Browser, path: &str, body: &str) -> u64 {
    b.eval(&format!(
        "fetch({path}, {{method: 'POST', headers: {{'Content-Type': 'application/x-www-form-urlencoded'}}, \
         body: {body}, redirect: 'manual'}}).then(r => r.status)",
        path = serde_json::to_string(path).unwrap(),
        body = serde_json::to_string(body).unwrap()
    ))
    .as_u64()
    .unwrap()
}

fn csrf(b: &mut Browser) -> String {
    b.eval("document.querySelector('input[name=csrf]').value")
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_action_works_with_admin_and_is_refused_without_it() {
    let (cfg, base) = seeded();
    let db = cfg.database();
    // A status the shipped rules do not know: quarantined now, parsed once the rule is fixed.
    std::fs::write(
        cfg.dir.path().join("Maildir/new/booked"),
        acme_mail(
            "booked-48293",
            "48293",
            "Appraisal Booked",
            "Dana Whitfield",
        ),
    )
    .unwrap();
    support::bin::run_to_completion(&cfg);
    let booked = count(
        &db,
        "SELECT id FROM messages WHERE message_id LIKE '%booked-48293@%'",
    )
    .await;
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT count(*) FROM messages WHERE id = {booked} AND disposition = 'quarantined'"
            )
        )
        .await,
        1
    );
    let _serve = Serve::start(&cfg, &base).await;
    let drift = count(&db, "SELECT min(id) FROM drifts WHERE closed_at IS NULL").await;
    let until = (Utc::now() + Duration::days(3)).date_naive().to_string();

    // A reader sees no action and cannot take one, even with a valid session and CSRF token.
    let mut reader = Browser::launch();
    reader.sign_in(&base, READ_TOKEN);
    reader.goto(&format!("{base}/drifts"));
    assert_eq!(
        reader.eval("document.querySelectorAll('form.action').length"),
        json!(0)
    );
    let token = csrf(&mut reader);
    assert_eq!(
        post_status(
            &mut reader,
            &format!("/drifts/{drift}/acknowledge"),
            &format!("csrf={token}&note=no")
        ),
        403
    );
    assert_eq!(
        post_status(
            &mut reader,
            "/vendors/acme-appraisal/mute",
            &format!("csrf={token}&until={until}")
        ),
        403
    );
    assert_eq!(
        post_status(
            &mut reader,
            &format!("/messages/{booked}/release"),
            &format!("csrf={token}")
        ),
        403
    );

    // An admin without the session's CSRF token is refused too.
    let mut admin = Browser::launch();
    admin.sign_in(&base, ADMIN_TOKEN);
    admin.goto(&format!("{base}/drifts"));
    assert_eq!(
        post_status(
            &mut admin,
            &format!("/drifts/{drift}/acknowledge"),
            "csrf=forged&note=x"
        ),
        400
    );
    assert_eq!(
        post_status(
            &mut admin,
            &format!("/drifts/{drift}/acknowledge"),
            "note=x"
        ),
        400
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM dashboard_actions").await,
        0,
        "nothing refused was recorded"
    );

    // Acknowledge: the drift stays listed, marked, with who and the note.
    let open_before = count(&db, "SELECT count(*) FROM drifts WHERE closed_at IS NULL").await;
    admin.submit(
        &format!("#drift-{drift} form.action"),
        &format!("document.querySelector('#drift-{drift} input[name=note]').value = 'vendor export lags; checked by phone';"),
    );
    assert_eq!(
        admin.eval(&format!(
            "document.querySelector('#drift-{drift}').dataset.acknowledged"
        )),
        json!("yes")
    );
    let ack = admin
        .eval(&format!(
            "document.querySelector('#drift-{drift} [data-field=ack]').innerText"
        ))
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        ack.contains("ops") && ack.contains("vendor export lags"),
        "{ack}"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM drifts WHERE closed_at IS NULL").await,
        open_before,
        "still open"
    );

    // Mute a vendor's silence alert until a date.
    admin.goto(&format!("{base}/vendors/acme-appraisal"));
    admin.submit(
        "form[action$='/mute']",
        &format!("document.querySelector('input[name=until]').value = '{until}'; document.querySelector('form[action$=\"/mute\"] input[name=note]').value = 'vendor on holiday';"),
    );
    admin.goto(&format!("{base}/"));
    let silence = admin.eval("document.querySelector(\"[data-vendor='acme-appraisal'] [data-field=silence]\").innerText").as_str().unwrap().to_string();
    assert!(silence.starts_with("muted until"), "{silence}");

    // Release: after the rule is fixed, the message is reparsed through the current rules.
    let rules = cfg.dir.path().join("parsers/acme-appraisal.toml");
    let mut text = std::fs::read_to_string(&rules).unwrap();
    assert!(
        text.trim_end().ends_with("\"Cancelled\" = \"cancelled\""),
        "status_map is the rule file's last table"
    );
    text.push_str("\"Appraisal Booked\" = \"scheduled\"\n");
    std::fs::write(&rules, text).unwrap();
    admin.goto(&format!("{base}/messages/{booked}"));
    admin.submit("form[action$='/release']", "");
    assert_eq!(
        admin.eval("document.querySelector('[data-field=disposition]').innerText"),
        json!("parsed")
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM deltas WHERE order_ref = '48293' AND status = 'scheduled'"
        )
        .await,
        1
    );

    // Each action is recorded with who, when and what...
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM dashboard_actions WHERE actor = 'ops'"
        )
        .await,
        3
    );
    // ...and shown in the order's timeline...
    let (v, o) = {
        let pool = support::db::open(&db).await;
        let row: (String, String) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT vendor, order_ref FROM drifts WHERE id = {drift}"
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        row
    };
    admin.goto(&format!("{base}/orders/{v}/{o}"));
    let actions = admin.eval("Array.from(document.querySelectorAll('li[data-kind=action]')).map(l => l.innerText).join('\\n')").as_str().unwrap().to_string();
    assert!(
        actions.contains("acknowledged drift") && actions.contains("ops"),
        "{actions}"
    );
    admin.goto(&format!("{base}/orders/acme-appraisal/48293"));
    let actions = admin.eval("Array.from(document.querySelectorAll('li[data-kind=action]')).map(l => l.innerText).join('\\n')").as_str().unwrap().to_string();
    assert!(
        actions.contains("released message") && actions.contains("parsed: 1 delta"),
        "{actions}"
    );
    // ...and in the day's report.
    admin.goto(&format!("{base}/reports"));
    let day = admin
        .eval("document.querySelector('[data-field=report]').innerText")
        .as_str()
        .unwrap()
        .to_string();
    assert!(day.contains("DASHBOARD ACTIONS (3)"), "{day}");
    for what in [
        "acknowledged drift",
        "muted the silence alert",
        "released message",
    ] {
        assert!(
            day.contains(what),
            "{what} missing from the report page: {day}"
        );
    }

    // The daily report itself (what the email carries) lists them too.
    let out = support::bin::driftwatch(&cfg, &["report", "--format", "text"])
        .stdout(std::process::Stdio::piped())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("DASHBOARD ACTIONS (3)") && text.contains("  ops  released message"),
        "{text}"
    );

    // Signing out ends the session: the next page asks to sign in again.
    admin.submit("form[action='/signout']", "");
    admin.goto(&format!("{base}/drifts"));
    assert_eq!(admin.eval("location.pathname"), json!("/signin"));
}

/// Outside a browser: a cross-site POST (another Origin) is refused even
/// with the session cookie and its CSRF token, and a sign-in answer never
/// echoes the token.
#[tokio::test(flavor = "multi_thread")]
async fn a_cross_site_post_is_refused() {
    let (cfg, base) = seeded();
    let db = cfg.database();
    let _serve = Serve::start(&cfg, &base).await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = c
        .post(format!("{base}/signin"))
        .header("Origin", &base)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string([("token", ADMIN_TOKEN)]).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for part in ["HttpOnly", "SameSite=Strict", "Max-Age="] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(!cookie.contains(ADMIN_TOKEN));
    let session = cookie.split(';').next().unwrap().to_string();
    let page = c
        .get(format!("{base}/drifts"))
        .header("Cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains(ADMIN_TOKEN));
    let token = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let drift = count(&db, "SELECT min(id) FROM drifts WHERE closed_at IS NULL").await;
    let r = c
        .post(format!("{base}/drifts/{drift}/acknowledge"))
        .header("Cookie", &session)
        .header("Origin", "https://evil.example")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string([("csrf", token.as_str()), ("note", "x")]).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A sign-in from another site is refused as well (login CSRF).
    let r = c
        .post(format!("{base}/signin"))
        .header("Origin", "https://evil.example")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string([("token", ADMIN_TOKEN)]).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The same POST from this site works.
    let r = c
        .post(format!("{base}/drifts/{drift}/acknowledge"))
        .header("Cookie", &session)
        .header("Origin", &base)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string([("csrf", token.as_str()), ("note", "x")]).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        count(&db, "SELECT count(*) FROM dashboard_actions").await,
        1
    );
    // The database keeps the session id's digest, never the id or the token.
    let id = session.split('=').nth(1).unwrap();
    assert_eq!(
        count(
            &db,
            &format!("SELECT count(*) FROM dashboard_sessions WHERE id_digest = '{id}'")
        )
        .await,
        0
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM dashboard_sessions").await,
        1
    );
}

/// A mute from the dashboard silences the report's "silent vendor" alert
/// until its date, and no longer: built for days after the seed's mail, so
/// every vendor with open orders has been quiet for longer than
/// `silent_after_hours`.
#[tokio::test(flavor = "multi_thread")]
async fn a_muted_vendor_is_not_reported_silent_until_the_mute_ends() {
    use driftwatch::report::model::AlertKind;
    use driftwatch::store::{ActionKind, NewAction};
    let (cfg, _base) = seeded();
    let app = cfg.app().await;
    let settings = app.config.report.clone().expect("the demo has [report]");
    let today = Utc::now().date_naive();
    let silent_on = |r: &driftwatch::report::Report| -> Vec<String> {
        r.alerts
            .iter()
            .filter(|a| a.kind == AlertKind::SilentVendor)
            .map(|a| a.vendor.clone())
            .collect()
    };
    let report_for = |days: i64| {
        let date = today + Duration::days(days);
        let now = (date + Duration::days(1))
            .and_hms_opt(12, 0, 0)
            .unwrap()
            .and_utc();
        let (store, settings) = (app.store.clone(), settings.clone());
        async move {
            driftwatch::report::build(&store, date, &settings, now)
                .await
                .unwrap()
        }
    };
    let before = silent_on(&report_for(4).await);
    assert!(before.contains(&"acme-appraisal".to_string()), "{before:?}");
    let mute = NewAction {
        vendor: Some("acme-appraisal".into()),
        mute_until: Some(
            (today + Duration::days(6))
                .and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc(),
        ),
        ..NewAction::new("ops", ActionKind::MuteSilence)
    };
    app.store.record_action(&mute, Utc::now()).await.unwrap();
    let during = silent_on(&report_for(4).await);
    assert!(
        !during.contains(&"acme-appraisal".to_string()),
        "{during:?}"
    );
    assert_eq!(
        during.len(),
        before.len() - 1,
        "other vendors are still reported"
    );
    let after = silent_on(&report_for(7).await);
    assert!(
        after.contains(&"acme-appraisal".to_string()),
        "the mute ended: {after:?}"
    );
}
