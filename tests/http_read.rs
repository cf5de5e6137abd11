//! The read API with a real client against `serve`: cursor pagination that
//! visits every row once, an order's history with links to its sources.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use reqwest::StatusCode;
use serde_json::Value;
use support::app::Serving;
use support::http::{READ_TOKEN, client, http_config, wait_healthy};
use support::vendor_mail;

async fn get(url: String) -> Value {
    let res = client()
        .get(&url)
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{url}");
    res.json().await.unwrap()
}

#[tokio::test]
async fn read_api_pages_visit_every_order_once_and_history_links_to_the_mail() {
    let (cfg, base) = http_config("");
    let mut raws = Vec::new();
    for n in 1..=5u32 {
        let status = if n % 2 == 0 {
            "Report Delivered"
        } else {
            "Accepted"
        };
        let raw = vendor_mail::acme(
            800 + n,
            status,
            "11/23/2026 09:10 AM",
            &format!("r{n}@acme"),
        );
        cfg.deliver(&format!("{n}.eml"), &raw);
        raws.push(raw);
    }
    cfg.deliver("q.eml", &vendor_mail::unknown_sender(1));
    let app = cfg.app().await;
    app.ingest_once().await.unwrap();
    let serving = Serving::start(&app);
    wait_healthy(&base).await;

    // Pages of two, followed by their `next` links, give every order once in key order.
    let mut refs = Vec::new();
    let mut url = format!("{base}/v1/orders?vendor=acme-appraisal&limit=2");
    let mut pages = 0;
    loop {
        let page = get(url).await;
        pages += 1;
        refs.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["order_ref"].as_str().unwrap().to_string()),
        );
        match page["next"].as_str() {
            Some(next) => url = format!("{base}{next}"),
            None => break,
        }
    }
    assert_eq!(refs, ["801", "802", "803", "804", "805"]);
    assert_eq!(pages, 3);
    let done = get(format!("{base}/v1/orders?status=completed")).await;
    let done: Vec<&str> = done["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_ref"].as_str().unwrap())
        .collect();
    assert_eq!(done, ["802", "804"]);

    // One order: the view row and its history; the email delta links to the archived mail.
    let one = get(format!("{base}/v1/orders/acme-appraisal/803")).await;
    assert_eq!(one["order"]["status"], "accepted");
    let history = one["history"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["source"], "email");
    let link = history[0]["source_link"].as_str().unwrap();
    let msg = get(format!("{base}{link}")).await;
    assert_eq!(msg["vendor"], "acme-appraisal");
    let raw = client()
        .get(format!("{base}{}", msg["raw"].as_str().unwrap()))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.headers()["content-type"], "message/rfc822");
    assert_eq!(
        raw.bytes().await.unwrap().as_ref(),
        raws[2].as_slice(),
        "the mail byte for byte"
    );

    let vendors = get(format!("{base}/v1/vendors")).await;
    let acme = vendors["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["vendor"] == "acme-appraisal")
        .unwrap();
    assert_eq!(acme["open_orders"], 3);
    assert_eq!(acme["open_drifts"], 0);
    assert_eq!(acme["silent"], false, "mail arrived just now: {acme}");

    let q = get(format!("{base}/v1/quarantine")).await;
    assert_eq!(q["items"].as_array().unwrap().len(), 1, "{q}");
    assert!(q.get("next").is_none());
    assert_eq!(
        get(format!("{base}/v1/drifts?open=true")).await["items"],
        serde_json::json!([])
    );
    assert_eq!(
        get(format!("{base}/v1/runs")).await["items"],
        serde_json::json!([])
    );

    for bad in [
        "/v1/orders?cursor=zz",
        "/v1/orders?status=shipped",
        "/v1/orders/acme-appraisal/nope",
        "/v1/drifts?open=maybe",
    ] {
        let res = client()
            .get(format!("{base}{bad}"))
            .bearer_auth(READ_TOKEN)
            .send()
            .await
            .unwrap();
        assert!(
            res.status() == StatusCode::BAD_REQUEST || res.status() == StatusCode::NOT_FOUND,
            "{bad}: {}",
            res.status()
        );
        assert_eq!(
            res.headers()["content-type"],
            "application/problem+json",
            "{bad}"
        );
    }
    let doc = client()
        .get(format!("{base}/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    let doc: Value = doc.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    serving.stop().await;
}
