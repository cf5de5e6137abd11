//! The delta feed: long poll, Server-Sent Events and the snapshot readers
//! resync from.
//!
//! One task per server ([`watch_head`]) follows the end of the log and
//! publishes it on a watch channel; readers sleep on that channel and touch
//! the database only when the log has grown past what they have read. The
//! task wakes on this process's appends at once and polls every
//! `feed_poll` for commits made by another process on the same database.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::Shared;
use super::config::Scope;
use super::problem::Problem;
use crate::model::Delta;
use crate::store::{DeltaFilter, Store};
use crate::telemetry::FeedReader;

/// Deltas per long-poll page when `limit` is not given, and at most.
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;
/// Deltas read per database round trip by an SSE stream.
const STREAM_CHUNK: i64 = 500;
/// Orders per chunk of a snapshot.
const SNAPSHOT_CHUNK: i64 = 500;

/// Follows the end of the log until shutdown. After an in-process append it
/// re-reads the end quickly (the append is announced just before its commit)
/// until the announced offset is visible; otherwise it reads every `poll`.
pub(super) async fn watch_head(
    store: Store,
    head: watch::Sender<i64>,
    poll: Duration,
    shutdown: CancellationToken,
) {
    let mut appended = crate::store::appended();
    let mut failing = false;
    loop {
        let target = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = appended.changed() => match r {
                Ok(()) => Some(*appended.borrow_and_update()),
                Err(_) => None,
            },
            _ = tokio::time::sleep(poll) => None,
        };
        let mut delay = Duration::from_millis(1);
        loop {
            match store.log_end().await {
                Ok(end) => {
                    if failing {
                        failing = false;
                        warn!("feed can read the log end again");
                    }
                    head.send_if_modified(|h| {
                        let grew = end > *h;
                        *h = (*h).max(end);
                        grew
                    });
                    if target.is_none_or(|t| end >= t) {
                        break;
                    }
                }
                Err(e) => {
                    if !failing {
                        warn!(error = %e, "feed cannot read the log end; readers wait");
                        failing = true;
                    }
                    break;
                }
            }
            if delay > poll {
                // The announced append rolled back, or belongs to another database.
                break;
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FeedQuery {
    after: Option<i64>,
    limit: Option<i64>,
    wait: Option<u64>,
    vendor: Option<String>,
}

/// A page of the long poll. `next` is the `after` of the next request.
#[derive(Debug, Serialize)]
struct Page {
    deltas: Vec<Delta>,
    next: i64,
    log_end: i64,
}

fn offset_gone(after: i64, end: i64) -> Problem {
    Problem::new(
        StatusCode::GONE,
        "offset-gone",
        "This offset cannot be served",
        format!(
            "offset {after} is past the end of this log ({end}); the log was restored or is a \
             different one. Resync from /v1/snapshot and continue after its offset"
        ),
    )
    .with("snapshot", serde_json::json!("/v1/snapshot"))
    .with("log_end", serde_json::json!(end))
    .header(header::LINK, "</v1/snapshot>; rel=\"snapshot\"")
}

/// Checks a reader's cursor against the log: negative is a bad request, past
/// the end is gone (the reader must resync, never silently skip).
async fn check_cursor(store: &Store, after: i64) -> Result<i64, Problem> {
    if after < 0 {
        return Err(Problem::bad_request("`after` must be 0 or a delta offset"));
    }
    let end = store.log_end().await?;
    if after > end {
        return Err(offset_gone(after, end));
    }
    Ok(end)
}

/// `GET /v1/deltas?after=&limit=&wait=&vendor=`
pub(super) async fn long_poll(
    State(s): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<FeedQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    s.tokens.check(&headers, Scope::Read)?;
    let Query(q) = q?;
    let after = q.after.unwrap_or(0);
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Problem::bad_request(format!(
            "`limit` must be between 1 and {MAX_LIMIT}"
        )));
    }
    let wait = Duration::from_secs(q.wait.unwrap_or(0));
    if wait > s.settings.max_wait {
        return Err(Problem::bad_request(format!(
            "`wait` must be at most {} seconds",
            s.settings.max_wait.as_secs()
        )));
    }
    let _reader = FeedReader::enter();
    check_cursor(&s.store, after).await?;
    let filter = DeltaFilter {
        vendor: q.vendor,
        order_ref: None,
    };
    let deadline = tokio::time::Instant::now() + wait;
    let mut head = s.head.clone();
    loop {
        // Everything up to `end` had committed before the page was read, so
        // an empty page means: wait until the log grows past `end`.
        let end = s.store.log_end().await?;
        let deltas = s.store.deltas_after(after, limit, &filter).await?;
        let timed_out = tokio::time::Instant::now() >= deadline;
        if !deltas.is_empty() || timed_out {
            let next = deltas.last().map_or(after, |d| d.offset);
            return Ok(axum::Json(Page {
                deltas,
                next,
                log_end: end,
            })
            .into_response());
        }
        tokio::select! {
            _ = head.wait_for(|h| *h > end) => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = s.shutdown.cancelled() => {
                // Answer what we have (nothing) so the client comes back after the restart.
                return Ok(axum::Json(Page { deltas: vec![], next: after, log_end: end }).into_response());
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StreamQuery {
    after: Option<i64>,
    vendor: Option<String>,
}

/// The state an SSE stream carries between events.
struct Reader {
    store: Store,
    filter: DeltaFilter,
    cursor: i64,
    /// The log end as of the last read: nothing at or below it is unread.
    seen_end: i64,
    buffered: VecDeque<Delta>,
    head: watch::Receiver<i64>,
    shutdown: CancellationToken,
    _counted: FeedReader,
}

impl Reader {
    /// The next delta, waiting as long as it takes; `None` ends the stream
    /// (shutdown, or a read error the client recovers from by reconnecting
    /// with its Last-Event-ID).
    async fn next(&mut self) -> Option<Delta> {
        loop {
            if let Some(d) = self.buffered.pop_front() {
                self.cursor = d.offset;
                return Some(d);
            }
            let end = self.seen_end;
            tokio::select! {
                r = self.head.wait_for(|h| *h > end) => { r.ok()?; }
                _ = self.shutdown.cancelled() => return None,
            }
            let read = async {
                let end = self.store.log_end().await?;
                let ds = self
                    .store
                    .deltas_after(self.cursor, STREAM_CHUNK, &self.filter)
                    .await?;
                Ok::<_, crate::store::StoreError>((end, ds))
            };
            match read.await {
                Ok((end, ds)) => {
                    // A full chunk may stop short of `end`: read again at once.
                    if ds.len() < STREAM_CHUNK as usize {
                        self.seen_end = end;
                    }
                    self.buffered.extend(ds);
                }
                Err(e) => {
                    warn!(error = %e, "feed stream read failed; closing it so the client resumes");
                    return None;
                }
            }
        }
    }
}

/// `GET /v1/deltas/stream?after=&vendor=`: SSE, `id` = offset,
/// `Last-Event-ID` wins over `after`.
pub(super) async fn stream(
    State(s): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    s.tokens.check(&headers, Scope::Read)?;
    let Query(q) = q?;
    let after = match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .ok_or_else(|| Problem::bad_request("Last-Event-ID must be a delta offset"))?,
        None => q.after.unwrap_or(0),
    };
    let counted = FeedReader::enter();
    check_cursor(&s.store, after).await?;
    let reader = Reader {
        store: s.store.clone(),
        filter: DeltaFilter {
            vendor: q.vendor,
            order_ref: None,
        },
        cursor: after,
        // Read once at the start whatever the head says.
        seen_end: -1,
        buffered: VecDeque::new(),
        head: s.head.clone(),
        shutdown: s.shutdown.clone(),
        _counted: counted,
    };
    let events = futures_util::stream::unfold(reader, |mut r| async move {
        let d = r.next().await?;
        let event = match serde_json::to_string(&d) {
            Ok(json) => Event::default()
                .id(d.offset.to_string())
                .event("delta")
                .data(json),
            Err(e) => {
                warn!(error = %e, offset = d.offset, "delta does not serialise; ending stream");
                return None;
            }
        };
        Some((Ok::<_, Infallible>(event), r))
    });
    Ok(Sse::new(events)
        .keep_alive(
            KeepAlive::new()
                .interval(s.settings.sse_heartbeat)
                .text("heartbeat"),
        )
        .into_response())
}

/// `GET /v1/snapshot`: `{"offset": N, "orders": [...]}`, streamed from one
/// read transaction. Continue the feed with `after = offset`.
pub(super) async fn snapshot(
    State(s): State<Shared>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    s.tokens.check(&headers, Scope::Read)?;
    let snap = s.store.snapshot().await?;
    let offset = snap.offset;
    let head = Bytes::from(format!("{{\"offset\":{offset},\"orders\":["));
    // (snapshot, first chunk sent, finished)
    let body = futures_util::stream::unfold(
        (snap, false, false),
        |(mut snap, started, done)| async move {
            if done {
                return None;
            }
            match snap.next_chunk(SNAPSHOT_CHUNK).await {
                Ok(orders) if orders.is_empty() => {
                    Some((Ok(Bytes::from_static(b"]}")), (snap, started, true)))
                }
                Ok(orders) => {
                    let mut out = Vec::new();
                    for (i, o) in orders.iter().enumerate() {
                        if started || i > 0 {
                            out.push(b',');
                        }
                        if let Err(e) = serde_json::to_writer(&mut out, o) {
                            return Some((Err(std::io::Error::other(e)), (snap, true, true)));
                        }
                    }
                    Some((Ok(Bytes::from(out)), (snap, true, false)))
                }
                Err(e) => {
                    // Cutting the body leaves invalid JSON: a client cannot take half a view for all of it.
                    warn!(error = %e, "snapshot read failed mid-stream");
                    Some((Err(std::io::Error::other(e)), (snap, true, true)))
                }
            }
        },
    );
    let body = futures_util::stream::once(async move { Ok::<_, std::io::Error>(head) }).chain(body);
    let mut res = Body::from_stream(body).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = header::HeaderValue::from_str(&offset.to_string()) {
        h.insert("driftwatch-offset", v);
    }
    Ok(res)
}

use futures_util::StreamExt as _;
