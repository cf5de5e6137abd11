//! RFC 9457 problem details: every error the API returns is
//! `application/problem+json` with a stable `type` a client can match on.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// One error answer, boxed so `Result<_, Problem>` stays small.
#[derive(Debug)]
pub struct Problem(Box<Doc>);

/// The document. `kind` becomes `urn:driftwatch:problem:<kind>`.
#[derive(Debug)]
pub struct Doc {
    pub status: StatusCode,
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: String,
    /// Extension members (RFC 9457 §3.2), e.g. the snapshot link of a 410.
    pub extra: Map<String, Value>,
    pub headers: HeaderMap,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Problem {
        Problem(Box::new(Doc {
            status,
            kind,
            title,
            detail: detail.into(),
            extra: Map::new(),
            headers: HeaderMap::new(),
        }))
    }

    pub fn with(mut self, key: &str, value: Value) -> Problem {
        self.0.extra.insert(key.to_string(), value);
        self
    }

    pub fn header(mut self, name: HeaderName, value: &'static str) -> Problem {
        self.0.headers.insert(name, HeaderValue::from_static(value));
        self
    }

    /// `Retry-After` in seconds (429, 503).
    pub fn retry_after(mut self, secs: u64) -> Problem {
        self.0
            .headers
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        self
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "The request is not valid",
            detail,
        )
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// A failure on our side. The cause is logged here, once, and the client
    /// gets no internals.
    pub fn internal(what: &str, error: &dyn std::fmt::Display) -> Problem {
        tracing::error!(error = %error, "{what} failed");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            format!("{what} failed; the server log has the cause"),
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let p = *self.0;
        let mut body = json!({
            "type": format!("urn:driftwatch:problem:{}", p.kind),
            "title": p.title,
            "status": p.status.as_u16(),
            "detail": p.detail,
        });
        if let Value::Object(m) = &mut body {
            m.extend(p.extra);
        }
        let mut res = (p.status, body.to_string()).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        res.headers_mut().extend(p.headers);
        res
    }
}

impl From<crate::store::StoreError> for Problem {
    fn from(e: crate::store::StoreError) -> Problem {
        if e.is_transient() {
            tracing::warn!(error = %e, "database busy; answering 503");
            return Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Temporarily unavailable",
                "the database is busy; retry shortly",
            )
            .header(header::RETRY_AFTER, "1");
        }
        Problem::internal("a database read", &e)
    }
}

/// Query-string rejections from axum become problems too.
impl From<axum::extract::rejection::QueryRejection> for Problem {
    fn from(e: axum::extract::rejection::QueryRejection) -> Problem {
        Problem::bad_request(e.body_text())
    }
}

impl From<axum::extract::rejection::PathRejection> for Problem {
    fn from(e: axum::extract::rejection::PathRejection) -> Problem {
        Problem::bad_request(e.body_text())
    }
}
