//! The read API: vendors, orders (with their history), drifts, quarantine
//! and reconcile runs as JSON. Lists are cursor-paginated: each page carries
//! `next_cursor` (opaque; absent on the last page) and a `next` link.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::{Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Shared;
use super::config::Scope;
use super::problem::Problem;
use crate::model::{Delta, DeltaSource, Status};
use crate::store::OrderPage;

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

/// A page of a list and the cursor of the next one.
#[derive(Serialize)]
struct Page<T> {
    items: Vec<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

fn limit(l: Option<i64>) -> Result<i64, Problem> {
    let l = l.unwrap_or(DEFAULT_LIMIT);
    if (1..=MAX_LIMIT).contains(&l) {
        Ok(l)
    } else {
        Err(Problem::bad_request(format!(
            "`limit` must be between 1 and {MAX_LIMIT}"
        )))
    }
}

/// Cursors are hex so they survive any query string untouched.
fn encode_cursor(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(c: &str) -> Result<String, Problem> {
    let bad = || Problem::bad_request("`cursor` is not one this API returned");
    if !c.len().is_multiple_of(2) {
        return Err(bad());
    }
    let bytes = (0..c.len())
        .step_by(2)
        .map(|i| c.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)?;
    String::from_utf8(bytes).map_err(|_| bad())
}

/// The next page's cursor and link, when this page was full.
fn page<T>(
    items: Vec<T>,
    limit: i64,
    path: &str,
    query: &[(&str, Option<String>)],
    cursor: impl Fn(&T) -> String,
) -> Page<T> {
    let next_cursor = (items.len() as i64 == limit)
        .then(|| items.last().map(&cursor))
        .flatten();
    let next = next_cursor.as_ref().map(|c| {
        let mut q: Vec<(String, String)> = query
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.to_string(), v)))
            .collect();
        q.push(("cursor".into(), c.clone()));
        q.push(("limit".into(), limit.to_string()));
        let qs = serde_urlencoded::to_string(&q).unwrap_or_default();
        format!("{path}?{qs}")
    });
    Page {
        items,
        next_cursor,
        next,
    }
}

fn id_cursor(c: Option<&str>) -> Result<Option<i64>, Problem> {
    c.map(|c| {
        decode_cursor(c)?
            .parse::<i64>()
            .map_err(|_| Problem::bad_request("`cursor` is not one this API returned"))
    })
    .transpose()
}

/// `GET /v1/vendors`
pub(super) async fn vendors(
    State(s): State<Shared>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    s.tokens.check(&headers, Scope::Read)?;
    let cutoff = Utc::now() - Duration::hours(i64::from(super::silent_after_hours(&s.config)));
    let items: Vec<Value> = s
        .store
        .vendor_summaries()
        .await?
        .into_iter()
        .map(|v| {
            let silent = v.is_silent(cutoff);
            json!({
                "vendor": v.vendor,
                "last_mail_at": v.last_mail_at,
                "last_key_frame_as_of": v.last_key_frame_as_of,
                "open_drifts": v.open_drifts,
                "quarantined": v.quarantined,
                "open_orders": v.open_orders,
                "silent": silent,
            })
        })
        .collect();
    Ok(Json(json!({ "items": items })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OrdersQuery {
    vendor: Option<String>,
    status: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/orders?vendor=&status=&cursor=&limit=`
pub(super) async fn orders(
    State(s): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<OrdersQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    s.tokens.check(&headers, Scope::Read)?;
    let Query(q) = q?;
    let status = q
        .status
        .as_deref()
        .map(str::parse::<Status>)
        .transpose()
        .map_err(|e| Problem::bad_request(e.to_string()))?;
    let after = q
        .cursor
        .as_deref()
        .map(|c| {
            decode_cursor(c)?
                .split_once('\0')
                .map(|(v, r)| (v.to_string(), r.to_string()))
                .ok_or_else(|| Problem::bad_request("`cursor` is not one this API returned"))
        })
        .transpose()?;
    let limit = limit(q.limit)?;
    let items = s
        .store
        .orders_page(&OrderPage {
            vendor: q.vendor.clone(),
            status,
            after,
            limit,
        })
        .await?;
    let p = page(
        items,
        limit,
        "/v1/orders",
        &[("vendor", q.vendor), ("status", q.status)],
        |o| encode_cursor(&format!("{}\0{}", o.vendor, o.order_ref)),
    );
    Ok(Json(p).into_response())
}

/// Where a delta came from, as a link a client can follow.
fn source_link(d: &Delta) -> String {
    match (d.source, d.message) {
        (DeltaSource::Email, Some(id)) => format!("/v1/messages/{id}"),
        _ => format!("/v1/deltas?after={}&limit=1", d.offset - 1),
    }
}

/// `GET /v1/orders/{vendor}/{order_ref}`: the view row and its history in
/// event order, each delta with its source and a link to it.
pub(super) async fn order(
    State(s): State<Shared>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, Problem> {
    s.tokens.check(&headers, Scope::Read)?;
    let Path((vendor, order_ref)) = path?;
    let Some(view) = s.store.order(&vendor, &order_ref).await? else {
        return Err(Problem::not_found(format!(
            "no order `{order_ref}` at vendor `{vendor}`"
        )));
    };
    let history: Vec<Value> = s
        .store
        .order_deltas(&vendor, &order_ref)
        .await?
        .into_iter()
        .map(|d| {
            let link = source_link(&d);
            let mut v = serde_json::to_value(&d).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                m.insert("source_link".into(), Value::String(link));
            }
            v
        })
        .collect();
    Ok(Json(json!({ "order": view, "history": history })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DriftsQuery {
    vendor: Option<String>,
    open: Option<bool>,
    cursor: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/drifts?vendor=&open=&cursor=&limit=`
pub(super) async fn drifts(
    State(s): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<DriftsQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    s.tokens.check(&headers, Scope::Read)?;
    let Query(q) = q?;
    let limit = limit(q.limit)?;
    let items = s
        .store
        .drifts_page(
            q.vendor.as_deref(),
            q.open,
            id_cursor(q.cursor.as_deref())?,
            limit,
        )
        .await?;
    let p = page(
        items,
        limit,
        "/v1/drifts",
        &[
            ("vendor", q.vendor),
            ("open", q.open.map(|o| o.to_string())),
        ],
        |d| encode_cursor(&d.id.to_string()),
    );
    Ok(Json(p).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    vendor: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/quarantine?vendor=&cursor=&limit=`
pub(super) async fn quarantine(
    State(s): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    s.tokens.check(&headers, Scope::Read)?;
    let Query(q) = q?;
    let limit = limit(q.limit)?;
    let items = s
        .store
        .quarantine_page(q.vendor.as_deref(), id_cursor(q.cursor.as_deref())?, limit)
        .await?;
    let p = page(
        items,
        limit,
        "/v1/quarantine",
        &[("vendor", q.vendor)],
        |m| encode_cursor(&m.id.to_string()),
    );
    Ok(Json(p).into_response())
}

/// `GET /v1/runs?vendor=&cursor=&limit=`
pub(super) async fn runs(
    State(s): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    s.tokens.check(&headers, Scope::Read)?;
    let Query(q) = q?;
    let limit = limit(q.limit)?;
    let items = s
        .store
        .runs_page(q.vendor.as_deref(), id_cursor(q.cursor.as_deref())?, limit)
        .await?;
    let p = page(items, limit, "/v1/runs", &[("vendor", q.vendor)], |r| {
        encode_cursor(&r.id.to_string())
    });
    Ok(Json(p).into_response())
}

/// `GET /v1/messages/{id}`: an archived message's metadata; `/raw` its bytes.
pub(super) async fn message(
    State(s): State<Shared>,
    headers: HeaderMap,
    path: Result<Path<i64>, PathRejection>,
) -> Result<Response, Problem> {
    s.tokens.check(&headers, Scope::Read)?;
    let Path(id) = path?;
    let m = s
        .store
        .message(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no message {id}")))?;
    Ok(Json(json!({
        "id": m.id,
        "vendor": m.vendor,
        "sender": m.sender,
        "subject": m.subject,
        "disposition": m.disposition,
        "reason": m.reason,
        "archived_at": m.archived_at,
        "internal_date": m.internal_date,
        "raw_complete": m.raw_complete,
        "size": m.raw.len(),
        "raw": format!("/v1/messages/{id}/raw"),
    }))
    .into_response())
}

pub(super) async fn message_raw(
    State(s): State<Shared>,
    headers: HeaderMap,
    path: Result<Path<i64>, PathRejection>,
) -> Result<Response, Problem> {
    s.tokens.check(&headers, Scope::Read)?;
    let Path(id) = path?;
    let m = s
        .store
        .message(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no message {id}")))?;
    // Served as an attachment of an inert type: mail bodies are untrusted HTML at worst.
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "message/rfc822"),
            (axum::http::header::CONTENT_DISPOSITION, "attachment"),
            (axum::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        m.raw,
    )
        .into_response())
}

/// `GET /v1/openapi.json`: the hand-written description of every route.
pub(super) async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

pub(super) const OPENAPI: &str = include_str!("openapi.json");
