//! Export sources: a local file (or the newest match in a drop folder), an
//! HTTP(S) URL, a paginated JSON API. Each fetch gives an [`Export`]: the
//! key frame's metadata and a body that [`for_each_row`] streams.
//!
//! One `enum` rather than a trait: the three sources share the body readers
//! and differ only in how bytes arrive, and the scheduler never needs to hold
//! a source across runs.
//!
//! Files and HTTP bodies are hashed while streamed (HTTP bodies go to a file
//! in the data dir first), so a million-row CSV never sits in memory. An API
//! listing is held as JSON values: APIs page, and such listings are smaller.

use std::borrow::Cow;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use tracing::{debug, warn};

use super::config::{
    ApiSettings, AsOf, CsvDialect, Encoding, ExportFormat, ExportSettings, Pagination,
    VendorSettings,
};
use super::mapping::{BadValue, Cell, RemoteOrder};
use super::whole::{Checked, SizeLimits, Syntax};
use crate::config::SecretError;

/// The hash a key frame's bytes are known by, so that the same bytes again
/// are `unchanged` without a diff. BLAKE3 rather than SHA-256: a large
/// export is hashed before anything else can start, and on this machine
/// SHA-256 took 40 ms of a 47 MB export where BLAKE3 takes a fraction.
/// (Key frames stored before the change hash differently: the first export
/// after it is diffed once more, with the same result.)
pub(crate) type ContentHasher = blake3::Hasher;

/// What we remember of the previous key frame, for conditional requests.
#[derive(Debug, Clone, Default)]
pub struct Previous {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// The trusted key frame's as-of: a source that finds nothing newer says
    /// `NotModified` instead of going back in time (sftp, mail).
    pub as_of: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct KeyFrameMeta {
    /// Where it came from: a path or URL, for the run record.
    pub source: String,
    /// `None` until known: `as_of = "field:..."` is read from the rows.
    pub as_of: Option<DateTime<Utc>>,
    pub fetched_at: DateTime<Utc>,
    /// [`ContentHasher`] of the bytes as fetched.
    pub content_hash: [u8; 32],
    /// False when a paginated listing stopped before its last page.
    pub complete: bool,
    pub incomplete_reason: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl KeyFrameMeta {
    /// Metadata of a complete key frame fetched at `fetched_at`; the source
    /// fills in as-of, hash and identity.
    pub(super) fn fetched(source: String, fetched_at: DateTime<Utc>) -> KeyFrameMeta {
        KeyFrameMeta {
            source,
            as_of: None,
            fetched_at,
            content_hash: [0; 32],
            complete: true,
            incomplete_reason: None,
            etag: None,
            last_modified: None,
        }
    }
}

#[derive(Debug)]
pub enum Body {
    /// A file to read; `temporary` ones are deleted when the export drops.
    File {
        path: PathBuf,
        format: ExportFormat,
        temporary: bool,
    },
    /// JSON records from an API listing.
    Records(Vec<serde_json::Value>),
    /// The server said 304: same as the previous key frame.
    NotModified,
}

#[derive(Debug)]
pub struct Export {
    pub meta: KeyFrameMeta,
    pub body: Body,
    as_of_field: Option<String>,
}

impl Export {
    /// A file the source downloaded into the work dir (deleted on drop).
    pub(super) fn download(
        meta: KeyFrameMeta,
        path: PathBuf,
        format: ExportFormat,
        as_of_field: Option<String>,
    ) -> Export {
        Export {
            meta,
            body: Body::File {
                path,
                format,
                temporary: true,
            },
            as_of_field,
        }
    }

    /// Nothing newer than the last trusted key frame.
    pub(super) fn not_modified(meta: KeyFrameMeta) -> Export {
        Export {
            meta,
            body: Body::NotModified,
            as_of_field: None,
        }
    }
}

impl Drop for Export {
    fn drop(&mut self) {
        if let Body::File {
            path,
            temporary: true,
            ..
        } = &self.body
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The longest wait between two tries of one API page.
const PAGE_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(60);

/// The export could not be fetched: worth retrying later.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    // The I/O error is in the message, so it is not also the `source`
    // (`{e:#}` would print it twice).
    #[error("cannot read {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("no file in {dir} matches `{pattern}`")]
    NoMatch { dir: PathBuf, pattern: String },
    #[error("HTTP request to {url} failed: {message}")]
    Http { url: String, message: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("auth secret: {0}")]
    Secret(SecretError),
    #[error(transparent)]
    Sftp(#[from] super::sftp::SftpError),
    #[error(transparent)]
    Mail(#[from] super::mail_source::MailError),
}

impl From<SecretError> for FetchError {
    fn from(e: SecretError) -> FetchError {
        FetchError::Secret(e)
    }
}

/// The export was fetched but cannot be trusted as a key frame: retrying the
/// same bytes will not help.
#[derive(Debug, thiserror::Error)]
pub enum KeyFrameError {
    #[error("row {row}: {message}")]
    Csv { row: u64, message: String },
    #[error("column `{column}` is not in the export (columns: {available})")]
    MissingColumn { column: String, available: String },
    #[error("{count} order key(s) appear more than once (e.g. {examples}); the export is not used")]
    DuplicateKeys { count: u64, examples: String },
    #[error("row {row}: {error}")]
    BadValue { row: u64, error: BadValue },
    /// `Order No,Status,Fee,Status`: which `Status` is the vendor's is a guess.
    #[error(
        "column `{column}` appears {count} times in the header: which one holds the value is a guess, so the export is not used"
    )]
    AmbiguousColumn { column: String, count: usize },
    /// Not readable as the declared format at all (a quoted field that goes
    /// on after its closing quote, bare-CR line ends, a UTF-16 JSON body).
    #[error("{0}")]
    Unreadable(String),
    #[error("row {row}: not valid {encoding}")]
    Encoding { row: u64, encoding: &'static str },
    #[error("JSON: {0}")]
    Json(String),
    /// The body is not whole: cut in transfer or while being written.
    #[error("not a whole export: {0}")]
    Cut(String),
    #[error("row {row}: {message}")]
    Oversize { row: u64, message: String },
    #[error("as_of: {0}")]
    AsOf(String),
}

fn hash_file(path: &Path) -> Result<[u8; 32], FetchError> {
    let io = |error| FetchError::Io {
        path: path.to_path_buf(),
        error,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = ContentHasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

/// The newest file (by mtime, then name) in `dir` whose name matches `pattern`.
fn newest_match(dir: &Path, pattern: &str) -> Result<PathBuf, FetchError> {
    let io = |error| FetchError::Io {
        path: dir.to_path_buf(),
        error,
    };
    let mut best: Option<(std::time::SystemTime, String, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Half-uploaded files are conventionally dotted or `.part`.
        if name.starts_with('.')
            || name.ends_with(".part")
            || !crate::parse::glob_match(pattern, &name)
        {
            continue;
        }
        let meta = entry.metadata().map_err(io)?;
        if !meta.is_file() {
            continue;
        }
        let mtime = meta.modified().map_err(io)?;
        let key = (mtime, name.clone(), entry.path());
        if best.as_ref().is_none_or(|b| (b.0, &b.1) < (key.0, &key.1)) {
            best = Some(key);
        }
    }
    best.map(|b| b.2).ok_or_else(|| FetchError::NoMatch {
        dir: dir.to_path_buf(),
        pattern: pattern.to_string(),
    })
}

fn file_export(path: &Path, format: ExportFormat, as_of: &AsOf) -> Result<Export, FetchError> {
    let fetched_at = Utc::now();
    let content_hash = hash_file(path)?;
    let (as_of, as_of_field) = match as_of {
        AsOf::Fetched | AsOf::Header(_) | AsOf::Body(_) => (Some(fetched_at), None),
        AsOf::Modified => {
            let m = std::fs::metadata(path)
                .and_then(|m| m.modified())
                .map_err(|error| FetchError::Io {
                    path: path.to_path_buf(),
                    error,
                })?;
            (Some(DateTime::<Utc>::from(m)), None)
        }
        AsOf::Field(f) => (None, Some(f.clone())),
    };
    Ok(Export {
        meta: KeyFrameMeta {
            source: path.display().to_string(),
            as_of,
            fetched_at,
            content_hash,
            complete: true,
            incomplete_reason: None,
            etag: None,
            last_modified: None,
        },
        body: Body::File {
            path: path.to_path_buf(),
            format,
            temporary: false,
        },
        as_of_field,
    })
}

/// Runs a blocking read (listing, hashing, parsing a file) on the blocking
/// pool, off the async workers that run the mail sources and the HTTP server.
pub(super) async fn blocking_read<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> Result<T, FetchError> + Send + 'static,
) -> Result<T, FetchError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(FetchError::Io {
            path: path.to_path_buf(),
            error: std::io::Error::other(format!("the reading task failed: {e}")),
        })
    })
}

/// Reads a key frame from a given file (CLI `--file`, tests, benchmarks):
/// as of the configured column if there is one, else the file's mtime.
/// Blocking: call it through [`blocking_read`] from async code.
pub fn from_file(path: &Path, vendor: &VendorSettings) -> Result<Export, FetchError> {
    let column = |a: &AsOf| match a {
        AsOf::Field(f) => AsOf::Field(f.clone()),
        _ => AsOf::Modified,
    };
    let (format, as_of) = match &vendor.export {
        Some(ExportSettings::File { format, as_of, .. })
        | Some(ExportSettings::Http { format, as_of, .. }) => (*format, column(as_of)),
        _ => (
            if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json"))
            {
                ExportFormat::Json
            } else {
                ExportFormat::Csv
            },
            AsOf::Modified,
        ),
    };
    file_export(path, format, &as_of)
}

fn client(timeout: std::time::Duration) -> Result<reqwest::Client, FetchError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| FetchError::Http {
            url: String::new(),
            message: e.to_string(),
        })
}

/// An as-of written in an export or a report mail: RFC 2822 or RFC 3339
/// (both carry their offset), or `YYYY-MM-DD HH:MM:SS` in the vendor's
/// `mapping.timezone`. Without a zone that last form is refused: read as
/// UTC, a vendor's local time would date the key frame hours off, and a
/// key frame dated ahead outranks genuine later email.
pub(super) fn parse_time(s: &str, zone: Option<chrono_tz::Tz>) -> Result<DateTime<Utc>, String> {
    if let Some(t) = http_time(s) {
        return Ok(t);
    }
    let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").map_err(|_| {
        format!("`{s}` is not a timestamp (RFC 3339, RFC 2822, or YYYY-MM-DD HH:MM:SS)")
    })?;
    match zone {
        Some(z) => driftwatch_core::reconcile::mapping::in_zone(naive, z)
            .map_err(|e| format!("`{s}` is not {e}")),
        None => Err(format!(
            "`{s}` has no zone or offset: write it as RFC 3339 (e.g. 2026-11-24T14:05:00Z) or set mapping.timezone"
        )),
    }
}

fn http_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(s)
        .or_else(|_| DateTime::parse_from_rfc3339(s))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn header_as_of(
    headers: &reqwest::header::HeaderMap,
    as_of: &AsOf,
    fetched_at: DateTime<Utc>,
) -> (Option<DateTime<Utc>>, Option<String>) {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    match as_of {
        AsOf::Fetched => (Some(fetched_at), None),
        // Last-Modified, else the response's Date; fetch time only if the
        // server sends neither (never later than the data).
        AsOf::Modified => (
            Some(
                get("last-modified")
                    .and_then(http_time)
                    .or_else(|| get("date").and_then(http_time))
                    .unwrap_or(fetched_at),
            ),
            None,
        ),
        AsOf::Header(h) => (Some(get(h).and_then(http_time).unwrap_or(fetched_at)), None),
        AsOf::Field(f) => (None, Some(f.clone())),
        // Refused by config validation for HTTP.
        AsOf::Body(_) => (Some(fetched_at), None),
    }
}

/// Fetches the vendor's configured export.
pub async fn fetch(
    store: &crate::store::Store,
    vendor: &VendorSettings,
    previous: &Previous,
    work_dir: &Path,
) -> Result<Option<Export>, FetchError> {
    match &vendor.export {
        None => Ok(None),
        Some(ExportSettings::File {
            path,
            dir,
            format,
            as_of,
        }) => {
            let (path, dir, format, as_of) = (path.clone(), dir.clone(), *format, as_of.clone());
            // Listing the folder and hashing the file are blocking reads.
            blocking_read(work_dir, move || {
                let p = match (path, dir) {
                    (Some(p), _) => p,
                    (None, Some((d, pat))) => newest_match(&d, &pat)?,
                    (None, None) => return Ok(None),
                };
                file_export(&p, format, &as_of).map(Some)
            })
            .await
        }
        Some(ExportSettings::Http {
            url,
            format,
            auth,
            as_of,
            timeout,
        }) => {
            let http_err = |e: reqwest::Error| FetchError::Http {
                url: url.clone(),
                message: e.to_string(),
            };
            let mut req = client(*timeout)?.get(url);
            if let Some((h, s)) = auth {
                req = req.header(h.as_str(), s.resolve().await?);
            }
            if let Some(e) = &previous.etag {
                req = req.header("if-none-match", e);
            }
            if let Some(m) = &previous.last_modified {
                req = req.header("if-modified-since", m);
            }
            let fetched_at = Utc::now();
            let mut resp = req.send().await.map_err(http_err)?;
            let status = resp.status();
            let etag = resp
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let last_modified = resp
                .headers()
                .get("last-modified")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let (as_of_t, as_of_field) = header_as_of(resp.headers(), as_of, fetched_at);
            let mut meta = KeyFrameMeta {
                source: url.clone(),
                as_of: as_of_t,
                fetched_at,
                content_hash: [0; 32],
                complete: true,
                incomplete_reason: None,
                etag,
                last_modified,
            };
            if status == reqwest::StatusCode::NOT_MODIFIED {
                return Ok(Some(Export {
                    meta,
                    body: Body::NotModified,
                    as_of_field,
                }));
            }
            if !status.is_success() {
                return Err(FetchError::Status {
                    url: url.clone(),
                    status: status.as_u16(),
                });
            }
            let io = |error| FetchError::Io {
                path: work_dir.to_path_buf(),
                error,
            };
            std::fs::create_dir_all(work_dir).map_err(io)?;
            let path = work_dir.join(format!(
                "{}-{}.download",
                vendor.name.replace(['/', '\\'], "_"),
                fetched_at.timestamp_micros()
            ));
            // Built first so a failure below still deletes the partial file.
            let mut export = Export {
                meta: meta.clone(),
                body: Body::File {
                    path: path.clone(),
                    format: *format,
                    temporary: true,
                },
                as_of_field,
            };
            let mut file = std::io::BufWriter::new(std::fs::File::create(&path).map_err(io)?);
            let mut h = ContentHasher::new();
            while let Some(chunk) = resp.chunk().await.map_err(http_err)? {
                h.update(&chunk);
                file.write_all(&chunk).map_err(io)?;
            }
            file.flush().map_err(io)?;
            meta.content_hash = h.finalize().into();
            export.meta = meta;
            Ok(Some(export))
        }
        Some(ExportSettings::Api(api)) => fetch_api(api).await.map(Some),
        Some(ExportSettings::Sftp(s)) => Ok(Some(
            super::sftp::fetch(s, &vendor.name, previous, work_dir).await?,
        )),
        Some(ExportSettings::Mail(m)) => Ok(Some(
            super::mail_source::fetch(
                store,
                m,
                &vendor.name,
                vendor.mapping.timezone,
                previous,
                work_dir,
            )
            .await?,
        )),
    }
}

fn pointer<'a>(doc: &'a serde_json::Value, p: &str) -> Option<&'a serde_json::Value> {
    if p.is_empty() || p == "/" {
        Some(doc)
    } else {
        doc.pointer(p)
    }
}

/// Pages through a JSON API. A page that keeps failing after the retries
/// ends the listing early: the key frame is then marked incomplete (the
/// guard refuses to fix from it) rather than the fetch failing outright, so
/// the run record says how far it got.
async fn fetch_api(api: &ApiSettings) -> Result<Export, FetchError> {
    let client = client(api.timeout)?;
    let fetched_at = Utc::now();
    let mut h = ContentHasher::new();
    let mut records = Vec::new();
    let mut first: Option<(reqwest::header::HeaderMap, serde_json::Value)> = None;
    let mut page: u64 = 1;
    let mut cursor: Option<String> = None;
    let mut incomplete: Option<String> = None;
    let mut total: Option<u64> = None;
    let mut pages = 0u32;
    loop {
        if pages >= api.max_pages {
            incomplete = Some(format!(
                "stopped at the page limit ({} pages)",
                api.max_pages
            ));
            break;
        }
        pages += 1;
        let mut params: Vec<(String, String)> =
            vec![(api.page_size_param.clone(), api.page_size.to_string())];
        match api.pagination {
            Pagination::Page => params.push((api.page_param.clone(), page.to_string())),
            Pagination::Cursor => {
                if let Some(c) = &cursor {
                    params.push((api.cursor_param.clone(), c.clone()));
                }
            }
        }
        let mut attempt = 0u32;
        let mut backoff = crate::backoff::Backoff::new(api.retry_backoff, PAGE_RETRY_MAX);
        let got = loop {
            let mut url = reqwest::Url::parse(&api.url).map_err(|e| FetchError::Http {
                url: api.url.clone(),
                message: e.to_string(),
            })?;
            url.query_pairs_mut().extend_pairs(params.iter());
            let mut req = client.get(url);
            if let Some((hname, s)) = &api.auth {
                req = req.header(hname.as_str(), s.resolve().await?);
            }
            let result = match req.send().await {
                Ok(r) if r.status().is_success() => {
                    let headers = r.headers().clone();
                    match r.bytes().await {
                        Ok(b) => Ok((headers, b)),
                        Err(e) => Err(e.to_string()),
                    }
                }
                Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok(x) => break Ok(x),
                Err(e) if attempt < api.retries => {
                    let wait = backoff.next_delay();
                    warn!(url = %api.url, page = pages, attempt, error = %e, "export page failed; retrying");
                    attempt += 1;
                    tokio::time::sleep(wait).await;
                }
                Err(e) => break Err(e),
            }
        };
        let (headers, bytes) = match got {
            Ok(x) => x,
            Err(e) => {
                incomplete = Some(format!(
                    "page {pages} failed after {} retries: {e}",
                    api.retries
                ));
                break;
            }
        };
        h.update(&bytes);
        let doc: serde_json::Value = match parse_page(&bytes) {
            Ok(d) => d,
            Err(e) => {
                incomplete = Some(format!("page {pages} is not JSON: {e}"));
                break;
            }
        };
        let items = match pointer(&doc, &api.items).and_then(|v| v.as_array()) {
            Some(a) => a.clone(),
            None => {
                incomplete = Some(format!("page {pages} has no array at `{}`", api.items));
                break;
            }
        };
        let n = items.len();
        records.extend(items);
        if total.is_none() {
            total = api
                .total
                .as_deref()
                .and_then(|p| pointer(&doc, p))
                .and_then(|v| v.as_u64());
        }
        let next = pointer(&doc, &api.next_cursor).and_then(|v| match v {
            serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
        if first.is_none() {
            first = Some((headers, doc));
        }
        debug!(url = %api.url, page = pages, items = n, "export page");
        match api.pagination {
            Pagination::Page if n < api.page_size as usize => break,
            Pagination::Page => page += 1,
            Pagination::Cursor => match next {
                Some(c) => cursor = Some(c),
                None => break,
            },
        }
    }
    if incomplete.is_none()
        && let Some(t) = total
        && (records.len() as u64) < t
    {
        incomplete = Some(format!(
            "listing ended after {} of {t} orders",
            records.len()
        ));
    }
    let (as_of, _) = match &first {
        Some((headers, doc)) => match &api.as_of {
            AsOf::Field(p) => (
                pointer(doc, p).and_then(|v| v.as_str()).and_then(http_time),
                None::<String>,
            ),
            other => header_as_of(headers, other, fetched_at),
        },
        None => (Some(fetched_at), None),
    };
    Ok(Export {
        meta: KeyFrameMeta {
            source: api.url.clone(),
            as_of: as_of.or(Some(fetched_at)),
            fetched_at,
            content_hash: h.finalize().into(),
            complete: incomplete.is_none(),
            incomplete_reason: incomplete,
            etag: None,
            last_modified: None,
        },
        body: Body::Records(records),
        as_of_field: None,
    })
}

// ---------------------------------------------------------------------------
// Reading rows.

fn decode(bytes: &[u8], enc: Encoding) -> Option<Cow<'_, str>> {
    match enc {
        Encoding::Utf8 => std::str::from_utf8(bytes).ok().map(Cow::Borrowed),
        Encoding::Latin1 => Some(match std::str::from_utf8(bytes) {
            Ok(s) if s.is_ascii() => Cow::Borrowed(s),
            _ => Cow::Owned(bytes.iter().map(|&b| b as char).collect()),
        }),
    }
}

fn enc_name(e: Encoding) -> &'static str {
    match e {
        Encoding::Utf8 => "UTF-8",
        Encoding::Latin1 => "Latin-1",
    }
}

type CsvReader = csv::Reader<BufReader<Checked<std::fs::File>>>;

fn csv_reader(path: &Path, d: &CsvDialect, limits: SizeLimits) -> Result<CsvReader, KeyFrameError> {
    use std::io::{Read, Seek};
    let cannot = |e: std::io::Error| KeyFrameError::Csv {
        row: 0,
        message: format!("cannot open {}: {e}", path.display()),
    };
    let mut f = std::fs::File::open(path).map_err(cannot)?;
    let mut head = Vec::with_capacity(2);
    (&mut f).take(2).read_to_end(&mut head).map_err(cannot)?;
    if two_byte_text(&head) {
        return Err(KeyFrameError::Unreadable(
            "the CSV export is UTF-16 (or another two-byte encoding); export it as UTF-8, or as Latin-1 with export.encoding = \"latin1\"".to_string(),
        ));
    }
    f.rewind().map_err(cannot)?;
    let checked = Checked::new(
        f,
        Syntax::Csv {
            quote: d.quote,
            delimiter: d.delimiter,
        },
        limits,
    );
    Ok(csv::ReaderBuilder::new()
        .delimiter(d.delimiter)
        .quote(d.quote)
        .has_headers(false)
        .flexible(false)
        .from_reader(BufReader::with_capacity(1 << 16, checked)))
}

/// After the last record: was the file whole?
fn csv_whole(rdr: &CsvReader, d: &CsvDialect, row: u64) -> Result<(), KeyFrameError> {
    let checked = rdr.get_ref().get_ref();
    if checked.ends_inside_quotes() {
        return Err(KeyFrameError::Cut(format!(
            "the file ends inside a quoted field (row {row}): it was cut, or a quote is unbalanced"
        )));
    }
    // The `csv` crate splits on a bare CR too, but nothing else here does
    // (the row limit counts line feeds): say what the file is rather than
    // suggest turning the cut-file check off.
    if checked.lines() == 0 && (row > 1 || checked.last_byte() == Some(b'\r')) {
        return Err(KeyFrameError::Unreadable(
            "the file's lines end with a bare CR (carriage return without line feed, old Mac style); a CSV export must end its lines with LF or CRLF".to_string(),
        ));
    }
    if d.final_newline && checked.last_byte().is_some_and(|b| b != b'\n') {
        return Err(KeyFrameError::Cut(format!(
            "the file does not end with a line break, so its last row (row {row}) may be cut; set export.final_newline = false if this vendor never writes one"
        )));
    }
    Ok(())
}

fn csv_err(e: &csv::Error, row: u64) -> KeyFrameError {
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!(
            "has {len} fields where the header has {expected_len} (a truncated or malformed export)"
        ),
        // The checked reader runs ahead of the parser (it sees whole
        // buffers), so its own reason, with its line, is the one to give.
        csv::ErrorKind::Io(io) if let Some(o) = super::whole::oversize(io) => {
            return KeyFrameError::Unreadable(o.to_string());
        }
        _ => e.to_string(),
    };
    KeyFrameError::Csv { row, message }
}

/// Column name → index for a CSV header (`1`, `2`, … without a header).
struct Columns {
    names: Vec<String>,
}

impl Columns {
    /// Where a mapped column is; one named twice is refused (an unmapped
    /// duplicate is never looked up, so it does no harm).
    fn index(&self, name: &str) -> Result<usize, KeyFrameError> {
        let i = self.names.iter().position(|n| n == name).ok_or_else(|| {
            KeyFrameError::MissingColumn {
                column: name.to_string(),
                available: self.names.join(", "),
            }
        })?;
        let count = self.names.iter().filter(|n| *n == name).count();
        if count > 1 {
            return Err(KeyFrameError::AmbiguousColumn {
                column: name.to_string(),
                count,
            });
        }
        Ok(i)
    }
}

/// Reads the header (or makes numeric names) from the first record.
fn read_header(
    rdr: &mut CsvReader,
    d: &CsvDialect,
    first: &mut csv::ByteRecord,
) -> Result<Option<Columns>, KeyFrameError> {
    if !rdr.read_byte_record(first).map_err(|e| csv_err(&e, 1))? {
        return Ok(None);
    }
    if !d.has_header {
        return Ok(Some(Columns {
            names: (1..=first.len()).map(|i| i.to_string()).collect(),
        }));
    }
    let mut names = Vec::with_capacity(first.len());
    for (i, cell) in first.iter().enumerate() {
        let cell = if i == 0 {
            cell.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(cell)
        } else {
            cell
        };
        let s = decode(cell, d.encoding).ok_or(KeyFrameError::Encoding {
            row: 1,
            encoding: enc_name(d.encoding),
        })?;
        names.push(s.trim().to_string());
    }
    first.clear();
    Ok(Some(Columns { names }))
}

/// Reads `as_of` from the first data row's column (`as_of = "field:COL"`).
pub fn resolve_as_of(
    export: &mut Export,
    vendor: &VendorSettings,
) -> Result<DateTime<Utc>, KeyFrameError> {
    if let Some(t) = export.meta.as_of {
        return Ok(t);
    }
    let field = export.as_of_field.clone().unwrap_or_default();
    let text: Option<String> = match &export.body {
        Body::File {
            path,
            format: ExportFormat::Csv,
            ..
        } => {
            let d = &vendor.csv;
            let mut rdr = csv_reader(path, d, vendor.limits)?;
            let mut rec = csv::ByteRecord::new();
            let cols = read_header(&mut rdr, d, &mut rec)?;
            let idx = match &cols {
                Some(c) => Some(c.index(&field)?),
                None => None,
            };
            if d.has_header && !rdr.read_byte_record(&mut rec).map_err(|e| csv_err(&e, 2))? {
                None
            } else {
                idx.and_then(|i| rec.get(i))
                    .and_then(|b| decode(b, d.encoding))
                    .map(|s| s.trim().to_string())
            }
        }
        Body::File {
            path,
            format: ExportFormat::Json,
            ..
        } => {
            let doc = read_json_outline(path, vendor.limits)?;
            json_items(&doc)
                .first()
                .and_then(|o| json_get(o, &field))
                .map(Cow::into_owned)
                .or_else(|| {
                    pointer(&doc, &field)
                        .and_then(|v| v.as_str())
                        .map(str::to_string)
                })
        }
        Body::Records(r) => r
            .first()
            .and_then(|o| json_get(o, &field))
            .map(Cow::into_owned),
        Body::NotModified => None,
    };
    let t = match text {
        // An empty export has no row to take `as_of` from; fetch time is safe.
        None => export.meta.fetched_at,
        Some(s) => parse_time(&s, vendor.mapping.timezone)
            .map_err(|e| KeyFrameError::AsOf(format!("{e} (as_of field `{field}`)")))?,
    };
    export.meta.as_of = Some(t);
    Ok(t)
}

/// A JSON document with every array cut to its first element: what `as_of`
/// from a field reads (the first record, or a value beside the records)
/// without holding a million records. The whole document is still parsed:
/// serde refuses one that ends inside a string or an open array/object, and
/// the checked reader an oversized string.
fn read_json_outline(path: &Path, limits: SizeLimits) -> Result<serde_json::Value, KeyFrameError> {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde_json::Value;

    struct Outline;
    impl<'de> DeserializeSeed<'de> for Outline {
        type Value = Value;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Outline {
        type Value = Value;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_string()))
        }
        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let first = seq.next_element_seed(Outline)?;
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Value::Array(first.into_iter().collect()))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut out = serde_json::Map::new();
            while let Some(k) = map.next_key::<String>()? {
                let v = map.next_value_seed(Outline)?;
                out.insert(k, v);
            }
            Ok(Value::Object(out))
        }
    }

    let counted = std::cell::Cell::new(0);
    let mut de = serde_json::Deserializer::from_reader(open_json(path, limits, &counted, None)?);
    let doc = Outline.deserialize(&mut de).map_err(json_err)?;
    de.end().map_err(json_err)?;
    Ok(doc)
}

/// The records of a JSON export: a top-level array, or the array at `/items`.
fn json_items(doc: &serde_json::Value) -> &[serde_json::Value] {
    doc.as_array()
        .or_else(|| doc.get("items").and_then(|v| v.as_array()))
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The value at `col`: a key, or a JSON pointer when it starts with `/`.
fn json_value<'a>(obj: &'a serde_json::Value, col: &str) -> Option<&'a serde_json::Value> {
    if col.starts_with('/') {
        obj.pointer(col)
    } else {
        obj.get(col)
    }
}

fn json_get<'a>(obj: &'a serde_json::Value, col: &str) -> Option<Cow<'a, str>> {
    match json_value(obj, col)? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(Cow::Borrowed(long_number(s).unwrap_or(s))),
        other => Some(Cow::Owned(other.to_string())),
    }
}

/// A record's cell for the mapping: `None` when the record lacks the key,
/// empty for `null` (so a null key or status is "empty", a missing one
/// "missing", and a null field absent). Numbers stay JSON numbers: read as
/// text under the vendor's declared separators, `1.234` would be 1234, and
/// a number cut to a double's digits would pass unnoticed.
fn json_cell<'a>(obj: &'a serde_json::Value, col: &str) -> Option<Cell<'a>> {
    Some(match json_value(obj, col)? {
        serde_json::Value::Null => Cell::Text(Cow::Borrowed("")),
        serde_json::Value::Number(n) => Cell::Number(n),
        serde_json::Value::String(s) => match long_number(s) {
            Some(text) => Cell::Literal(text),
            None => Cell::Text(Cow::Borrowed(s)),
        },
        other => Cell::Text(Cow::Owned(other.to_string())),
    })
}

/// Rows of a key frame that could not be read (a number ambiguous under the
/// declared separators, a date that is not one, a row without a key or
/// status, a JSON item that is not a record). Counted, with the first few
/// reasons, so the guard refuses the whole key frame and says why, instead
/// of the run stopping at the first or applying the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowErrors {
    pub count: u64,
    pub examples: Vec<String>,
}

impl RowErrors {
    const EXAMPLES: usize = 3;

    fn push(&mut self, row: u64, e: impl std::fmt::Display) {
        self.count += 1;
        if self.examples.len() < Self::EXAMPLES {
            self.examples.push(format!("row {row}: {e}"));
        }
    }
}

/// What streaming a key frame's rows found besides the orders.
#[derive(Debug, Clone, Default)]
pub struct RowsRead {
    /// Order rows read (blank lines are not rows; a row without a key is a
    /// row error).
    pub rows: u64,
    pub bad: RowErrors,
}

impl RowsRead {
    /// One row's result: the order (read into `order`) lent to `f`, or a
    /// bad row counted.
    fn take(
        &mut self,
        row: u64,
        read: Result<(), BadValue>,
        order: &mut RemoteOrder,
        f: &mut dyn FnMut(&mut RemoteOrder),
    ) {
        match read {
            Ok(()) => {
                self.rows += 1;
                f(order);
            }
            Err(e) => self.bad.push(row, e),
        }
    }
}

fn for_each_json(
    records: &[serde_json::Value],
    vendor: &VendorSettings,
    f: &mut dyn FnMut(&mut RemoteOrder),
) -> Result<RowsRead, KeyFrameError> {
    let mut rows = JsonRows::new(vendor, f);
    let mapped = mapped_columns(&vendor.mapping);
    for rec in records {
        let dup = rec
            .get(TWICE)
            .and_then(|v| v.as_array())
            .and_then(|names| {
                names
                    .iter()
                    .filter_map(|n| n.as_str())
                    .find(|n| mapped.contains(n))
            })
            .map(str::to_string);
        rows.record(rec, dup)?;
    }
    Ok(rows.read)
}

/// The columns a JSON record is read for: a record naming one twice is a
/// row error.
fn mapped_columns(m: &driftwatch_core::reconcile::settings::Mapping) -> Vec<&str> {
    let mut mapped: Vec<&str> = m.key.iter().map(String::as_str).collect();
    mapped.extend(m.status.as_deref());
    mapped.extend(m.fields.iter().map(|f| f.column.as_str()));
    mapped
}

/// JSON records to orders, one at a time: the in-memory listing of an API
/// and the streamed file share it.
struct JsonRows<'a> {
    vendor: &'a VendorSettings,
    f: &'a mut dyn FnMut(&mut RemoteOrder),
    read: RowsRead,
    order: RemoteOrder,
    row: u64,
}

/// A JSON value as shown in a reason: at most 80 characters.
fn shown(v: &serde_json::Value) -> String {
    let s = match v.as_str().and_then(long_number) {
        Some(text) => text.to_string(),
        None => v.to_string(),
    };
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

impl<'a> JsonRows<'a> {
    fn new(vendor: &'a VendorSettings, f: &'a mut dyn FnMut(&mut RemoteOrder)) -> JsonRows<'a> {
        JsonRows {
            vendor,
            f,
            read: RowsRead::default(),
            order: RemoteOrder::default(),
            row: 0,
        }
    }

    /// The first record must hold the key columns: a wrong export fails on
    /// it rather than as a million bad rows. After it, a record that is not
    /// an object, names a mapped key twice (`dup`), or has no usable key is
    /// a row error: skipped, its order would count as gone from the export.
    fn record(
        &mut self,
        rec: &serde_json::Value,
        dup: Option<String>,
    ) -> Result<(), KeyFrameError> {
        self.row += 1;
        let Some(obj) = rec.as_object() else {
            self.read.bad.push(
                self.row,
                format_args!("`{}` is not a record (an object of fields)", shown(rec)),
            );
            return Ok(());
        };
        if self.row == 1 {
            for col in self.vendor.mapping.key.iter() {
                if json_value(rec, col).is_none() {
                    return Err(KeyFrameError::MissingColumn {
                        column: col.clone(),
                        available: obj
                            .keys()
                            .filter(|k| *k != TWICE)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
            }
        }
        if let Some(k) = dup {
            self.read.bad.push(
                self.row,
                format_args!(
                    "column `{k}` is given more than once in the record: which value is the vendor's is a guess"
                ),
            );
            return Ok(());
        }
        for col in &self.vendor.mapping.key {
            // `48217` is the key "48217"; `48217.0`, `true` or an array is no key.
            let fits = match json_value(rec, col) {
                Some(serde_json::Value::Number(n)) => n.is_i64() || n.is_u64(),
                Some(serde_json::Value::String(t)) => long_number(t).is_none_or(|n| {
                    n.strip_prefix('-')
                        .unwrap_or(n)
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                }),
                Some(serde_json::Value::Bool(_) | serde_json::Value::Array(_))
                | Some(serde_json::Value::Object(_)) => false,
                _ => true,
            };
            if !fits {
                let value = json_value(rec, col).map(shown).unwrap_or_default();
                self.read.bad.push(
                    self.row,
                    BadValue::Value {
                        column: col.clone(),
                        value,
                        expected: "an order key (a string, or a whole number)".to_string(),
                    },
                );
                return Ok(());
            }
        }
        let got = self
            .vendor
            .remote_order_cells_into(|c| json_cell(rec, c), &mut self.order);
        self.read.take(self.row, got, &mut self.order, self.f);
        Ok(())
    }
}

/// The prefix that marks, in a record read from a JSON export, the text of
/// a number a double cannot hold (see [`NumberTap`]). NUL starts no key or
/// amount a vendor sends; a string forged with it is read only as the
/// number it spells, as if the vendor had sent that number.
const LONG_NUMBER: &str = "\u{0}driftwatch:number:";

/// The key under which an object read inside a document (an API page's
/// records) lists the names it was given more than once: serde_json keeps
/// the last value, so which is the vendor's would be a guess. A file's
/// records are checked as they are read (`Record::dup`); a page's only
/// after the whole page is read, from this.
const TWICE: &str = "\u{0}driftwatch:twice";

/// The number text behind [`LONG_NUMBER`], if `s` is one.
fn long_number(s: &str) -> Option<&str> {
    s.strip_prefix(LONG_NUMBER)
}

/// Long number literals, found in the bytes before serde_json reads them.
/// serde_json hands a visitor only a number's double, in which
/// `1.00000000000000000001` is 1; this lexer numbers every literal it
/// passes and keeps the text of each with more significant digits than a
/// double keeps (16 or more). The visitor counts the numbers it is handed
/// ([`Numbers::visited`]), every one of them in document order, so the
/// text of its n-th is the n-th literal's, however far ahead of the parser
/// the buffered lexer reads.
#[derive(Default)]
struct NumberTap {
    in_string: bool,
    escaped: bool,
    /// The literal being read: its text, its significant digits so far, the
    /// zeros since its last non-zero digit, whether a non-zero digit came
    /// yet, and whether its exponent has begun.
    reading: bool,
    text: String,
    digits: u32,
    zeros: u32,
    nonzero: bool,
    exponent: bool,
    /// Literals finished so far.
    count: u64,
}

impl NumberTap {
    fn see_all(&mut self, bytes: &[u8], long: &Numbers) {
        let mut i = 0;
        while i < bytes.len() {
            if self.in_string && !self.escaped {
                // Strings are most of a record: skip to their end or an escape.
                match memchr::memchr2(b'"', b'\\', &bytes[i..]) {
                    Some(k) => i += k,
                    None => return,
                }
            }
            self.see(bytes[i], long);
            i += 1;
        }
    }

    fn see(&mut self, b: u8, long: &Numbers) {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
            }
            return;
        }
        if self.reading {
            if matches!(b, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') {
                self.digit(b);
                return;
            }
            self.reading = false;
            self.count += 1;
            if self.digits as usize > driftwatch_core::number::DOUBLE_DIGITS {
                long.found
                    .borrow_mut()
                    .push_back((self.count, std::mem::take(&mut self.text)));
            }
        }
        match b {
            b'"' => self.in_string = true,
            b'-' | b'0'..=b'9' => {
                self.reading = true;
                self.text.clear();
                (self.digits, self.zeros, self.nonzero, self.exponent) = (0, 0, false, false);
                self.digit(b);
            }
            _ => {}
        }
    }

    fn digit(&mut self, b: u8) {
        // Past this, the literal is refused whatever the rest says.
        if self.text.len() < driftwatch_core::number::MAX_LITERAL {
            self.text.push(char::from(b));
        }
        match b {
            b'e' | b'E' => self.exponent = true,
            b'0' if !self.exponent && self.nonzero => self.zeros += 1,
            b'1'..=b'9' if !self.exponent => {
                self.digits += self.zeros + 1;
                self.zeros = 0;
                self.nonzero = true;
            }
            _ => {}
        }
    }
}

/// The long literals a [`NumberTap`] found, and how many numbers the
/// visitor has been handed: shared by the reader and the visitor.
#[derive(Default)]
struct Numbers {
    found: std::cell::RefCell<std::collections::VecDeque<(u64, String)>>,
    visited: std::cell::Cell<u64>,
}

impl Numbers {
    /// Called for every number the visitor is handed: the text of this one
    /// when it is long.
    fn next(&self) -> Option<String> {
        let n = self.visited.get() + 1;
        self.visited.set(n);
        let mut found = self.found.borrow_mut();
        while found.front().is_some_and(|(k, _)| *k < n) {
            found.pop_front();
        }
        match found.front() {
            Some((k, _)) if *k == n => found.pop_front().map(|(_, text)| text),
            _ => None,
        }
    }
}

/// A reader whose bytes a [`NumberTap`] sees as they are read (none when
/// no visitor counts the numbers: the texts would only pile up).
struct Tapped<'t, R> {
    inner: R,
    tap: NumberTap,
    long: Option<&'t Numbers>,
}

impl<'t, R> Tapped<'t, R> {
    fn new(inner: R, long: Option<&'t Numbers>) -> Self {
        Tapped {
            inner,
            tap: NumberTap::default(),
            long,
        }
    }
}

impl<R: Read> Read for Tapped<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(long) = self.long {
            self.tap.see_all(&buf[..n], long);
        }
        Ok(n)
    }
}

/// Skips a value as `IgnoredAny` does, but counts its numbers, so that
/// [`Numbers`] stays in step with the document.
struct Skip<'n>(&'n Numbers);

impl<'de> serde::de::DeserializeSeed<'de> for Skip<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Skip<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        self.0.next();
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        self.0.next();
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        self.0.next();
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip(self.0))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key::<serde::de::IgnoredAny>()?.is_some() {
            map.next_value_seed(Skip(self.0))?;
        }
        Ok(())
    }
}

/// An API page as a `Value`, read as export files are: numbers a double
/// cannot hold kept as written (see [`NumberTap`]).
fn parse_page(bytes: &[u8]) -> Result<serde_json::Value, serde_json::Error> {
    use serde::de::DeserializeSeed;
    let long = Numbers::default();
    let read = std::cell::Cell::new(0);
    let rec = Record {
        read: &read,
        start: std::cell::Cell::new(0),
        limit: u64::MAX / 2,
        over: std::cell::Cell::new(false),
        mapped: Vec::new(),
        dup: std::cell::RefCell::new(None),
        long: &long,
    };
    let mut de =
        serde_json::Deserializer::from_reader(BufReader::new(Tapped::new(bytes, Some(&long))));
    let doc = Bounded {
        rec: &rec,
        top: false,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(doc)
}

/// Bytes read from a JSON export so far, counted below the `BufReader`, so
/// a record's size is known while it is parsed (to within [`JSON_BUF`]).
struct Counting<'c, R> {
    inner: R,
    read: &'c std::cell::Cell<u64>,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

/// A UTF-16 (or other two-byte) body, told by its byte order mark or by one
/// NUL in its first two bytes (ASCII text in UTF-16 without a mark): refused
/// as such, not as the first row's invalid UTF-8 or a JSON syntax error.
fn two_byte_text(head: &[u8]) -> bool {
    head.starts_with(b"\xFF\xFE")
        || head.starts_with(b"\xFE\xFF")
        || (head.len() >= 2 && (head[0] == 0) != (head[1] == 0))
}

/// The JSON reader's buffer: how far the byte count can run ahead of the parser.
const JSON_BUF: usize = 8 * 1024;

type JsonReader<'c> = BufReader<Tapped<'c, Counting<'c, Checked<std::fs::File>>>>;

/// Opens a JSON export past a UTF-8 BOM (as the CSV reader skips one); a
/// UTF-16 body is refused as such, not as "expected value at line 1".
fn open_json<'c>(
    path: &Path,
    limits: SizeLimits,
    read: &'c std::cell::Cell<u64>,
    long: Option<&'c Numbers>,
) -> Result<JsonReader<'c>, KeyFrameError> {
    use std::io::BufRead;
    let cannot =
        |e: std::io::Error| KeyFrameError::Json(format!("cannot read {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut r = BufReader::with_capacity(
        JSON_BUF,
        Tapped::new(
            Counting {
                inner: Checked::new(file, Syntax::Json, limits),
                read,
            },
            long,
        ),
    );
    let head = r.fill_buf().map_err(cannot)?;
    if head.starts_with(b"\xEF\xBB\xBF") {
        r.consume(3);
    } else if two_byte_text(head) {
        return Err(KeyFrameError::Unreadable(
            "the JSON export is UTF-16 (or another two-byte encoding); only UTF-8 JSON is read"
                .to_string(),
        ));
    }
    Ok(r)
}

/// One record, read into a `Value` as serde_json would, but within
/// `max_row_bytes` (a 94 MB record of 5 million keys took 830 MB and was
/// read) and noting a mapped key named twice (serde_json keeps the last).
struct Record<'c> {
    read: &'c std::cell::Cell<u64>,
    /// The byte count when the record began.
    start: std::cell::Cell<u64>,
    limit: u64,
    over: std::cell::Cell<bool>,
    mapped: Vec<&'c str>,
    dup: std::cell::RefCell<Option<String>>,
    /// The text of the number just read, when a double cannot hold it.
    long: &'c Numbers,
}

impl Record<'_> {
    fn check<E: serde::de::Error>(&self) -> Result<(), E> {
        if self.read.get().saturating_sub(self.start.get()) > self.limit + JSON_BUF as u64 {
            self.over.set(true);
            return Err(E::custom("the record is over max_row_bytes"));
        }
        Ok(())
    }
}

/// A value inside a record (`top`: the record itself).
struct Bounded<'r, 'c> {
    rec: &'r Record<'c>,
    top: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for Bounded<'_, '_> {
    type Value = serde_json::Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Bounded<'_, '_> {
    type Value = serde_json::Value;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        self.rec.long.next();
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        self.rec.long.next();
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        // The literal's own text, when a double cannot hold it.
        Ok(match self.rec.long.next() {
            Some(text) => serde_json::Value::String(format!("{LONG_NUMBER}{text}")),
            None => v.into(),
        })
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        loop {
            self.rec.check()?;
            let seed = Bounded {
                rec: self.rec,
                top: false,
            };
            match seq.next_element_seed(seed)? {
                Some(v) => out.push(v),
                None => return Ok(serde_json::Value::Array(out)),
            }
        }
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = serde_json::Map::new();
        let mut twice = Vec::new();
        loop {
            self.rec.check()?;
            let Some(k) = map.next_key::<String>()? else {
                if !twice.is_empty() {
                    out.insert(TWICE.to_string(), serde_json::Value::Array(twice));
                }
                return Ok(serde_json::Value::Object(out));
            };
            let v = map.next_value_seed(Bounded {
                rec: self.rec,
                top: false,
            })?;
            match out.entry(k) {
                serde_json::map::Entry::Vacant(e) => {
                    e.insert(v);
                }
                serde_json::map::Entry::Occupied(mut e) => {
                    if self.top {
                        if self.rec.mapped.contains(&e.key().as_str()) {
                            self.rec
                                .dup
                                .borrow_mut()
                                .get_or_insert_with(|| e.key().clone());
                        }
                    } else {
                        twice.push(serde_json::Value::String(e.key().clone()));
                    }
                    e.insert(v);
                }
            }
        }
    }
}

/// A JSON export file streamed a record at a time: the records of a
/// top-level array, or of the array at `items` (other keys are skipped).
/// Read whole, a million-order export took 1 GB and 4.9 s; one record at a
/// time the memory is the diff's own. A cut document fails at its end, as a
/// cut CSV does, before anything is written.
fn stream_json(
    path: &Path,
    vendor: &VendorSettings,
    f: &mut dyn FnMut(&mut RemoteOrder),
) -> Result<RowsRead, KeyFrameError> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

    /// Where the records are: the document (top), or the value of `items`.
    struct Level<'r, 'a, 'c> {
        rows: &'r mut JsonRows<'a>,
        rec: &'r Record<'c>,
        failed: &'r mut Option<KeyFrameError>,
        top: bool,
    }
    impl<'de> DeserializeSeed<'de> for Level<'_, '_, '_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Level<'_, '_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str(if self.top {
                "an array of records, or an object with an `items` array"
            } else {
                "`items` to be an array of records"
            })
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            loop {
                self.rec.start.set(self.rec.read.get());
                let seed = Bounded {
                    rec: self.rec,
                    top: true,
                };
                let rec = match seq.next_element_seed(seed) {
                    Ok(Some(rec)) => rec,
                    Ok(None) => return Ok(()),
                    Err(e) => {
                        if self.rec.over.get() {
                            *self.failed = Some(KeyFrameError::Oversize {
                                row: self.rows.row + 1,
                                message: format!(
                                    "a record is longer than the limit of {} bytes (export.max_row_bytes); the export is refused",
                                    self.rec.limit
                                ),
                            });
                        }
                        return Err(e);
                    }
                };
                let dup = self.rec.dup.borrow_mut().take();
                if let Err(e) = self.rows.record(&rec, dup) {
                    *self.failed = Some(e);
                    return Err(serde::de::Error::custom("stopped"));
                }
            }
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            if !self.top {
                return Err(serde::de::Error::invalid_type(
                    serde::de::Unexpected::Map,
                    &self,
                ));
            }
            let mut items = false;
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                if key == "items" {
                    // Which of two lists would be the vendor's? Neither.
                    if std::mem::replace(&mut items, true) {
                        return Err(serde::de::Error::custom("the document has `items` twice"));
                    }
                    map.next_value_seed(Level {
                        rows: &mut *self.rows,
                        rec: self.rec,
                        failed: &mut *self.failed,
                        top: false,
                    })?;
                } else {
                    map.next_value_seed(Skip(self.rec.long))?;
                }
            }
            if !items {
                // Read as "no orders", every order would go missing.
                return Err(serde::de::Error::custom(
                    "the document is an object without an `items` array of records",
                ));
            }
            Ok(())
        }
        // Anything else holds no records: serde's default visits refuse it
        // ("invalid type: null, expected ..."), never read as "no orders".
    }

    let counted = std::cell::Cell::new(0);
    let long = Numbers::default();
    let mut de = serde_json::Deserializer::from_reader(open_json(
        path,
        vendor.limits,
        &counted,
        Some(&long),
    )?);
    let m = &vendor.mapping;
    let mapped = mapped_columns(m);
    let rec = Record {
        read: &counted,
        start: std::cell::Cell::new(0),
        limit: vendor.limits.row,
        over: std::cell::Cell::new(false),
        mapped,
        dup: std::cell::RefCell::new(None),
        long: &long,
    };
    let mut rows = JsonRows::new(vendor, f);
    let mut failed = None;
    let parsed = Level {
        rows: &mut rows,
        rec: &rec,
        failed: &mut failed,
        top: true,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    if let Some(e) = failed {
        return Err(e);
    }
    parsed.map_err(json_err)?;
    Ok(rows.read)
}

fn json_err(e: serde_json::Error) -> KeyFrameError {
    if e.is_eof() {
        KeyFrameError::Cut(format!("the JSON ends before its structure closes ({e})"))
    } else {
        KeyFrameError::Json(e.to_string())
    }
}

/// Streams every order of the export to `f`, each lent in one reused row:
/// `f` takes what it keeps (`std::mem::take`, or a swap with a spare). A
/// structural fault (a cut
/// file, a missing column) stops the read with an error; a row whose values
/// cannot be read is counted in [`RowsRead::bad`] for the guard, which then
/// refuses the key frame: it is used whole or not at all.
pub fn for_each_row(
    export: &Export,
    vendor: &VendorSettings,
    f: &mut dyn FnMut(&mut RemoteOrder),
) -> Result<RowsRead, KeyFrameError> {
    match &export.body {
        Body::NotModified => Ok(RowsRead::default()),
        Body::Records(r) => for_each_json(r, vendor, f),
        Body::File {
            path,
            format: ExportFormat::Json,
            ..
        } => stream_json(path, vendor, f),
        Body::File {
            path,
            format: ExportFormat::Csv,
            ..
        } => {
            let d = &vendor.csv;
            let mut rdr = csv_reader(path, d, vendor.limits)?;
            let mut rec = csv::ByteRecord::new();
            let Some(cols) = read_header(&mut rdr, d, &mut rec)? else {
                csv_whole(&rdr, d, 0)?;
                return Ok(RowsRead::default());
            };
            // Resolve every mapped column once, so a wrong export fails on its header.
            let m = &vendor.mapping;
            let mut wanted: Vec<&str> = m.key.iter().map(String::as_str).collect();
            wanted.extend(m.status.as_deref());
            wanted.extend(m.fields.iter().map(|f| f.column.as_str()));
            // A handful of columns: a scan beats hashing the name on every row.
            // The mapping asks by the very strings listed here, so the same
            // address and length is a match without comparing bytes (four
            // `memcmp` calls a row were a tenth of the parser's thread).
            let mut index = Vec::with_capacity(wanted.len());
            for w in wanted {
                index.push((w, cols.index(w)?));
            }
            let mut row: u64 = if d.has_header { 1 } else { 0 };
            let mut read = RowsRead::default();
            let mut order = RemoteOrder::default();
            let mut pending = !d.has_header;
            loop {
                if !pending
                    && !rdr
                        .read_byte_record(&mut rec)
                        .map_err(|e| csv_err(&e, row + 1))?
                {
                    csv_whole(&rdr, d, row)?;
                    break;
                }
                pending = false;
                row += 1;
                // Unquoted fields are bounded only by the row limit while read.
                if rec.as_slice().len() as u64 > vendor.limits.field
                    && let Some(len) = rec.iter().map(<[u8]>::len).max()
                    && len as u64 > vendor.limits.field
                {
                    return Err(KeyFrameError::Oversize {
                        row,
                        message: format!(
                            "a field of {len} bytes is over the limit of {} (export.max_field_bytes)",
                            vendor.limits.field
                        ),
                    });
                }
                // A blank line (or one of only delimiters, as spreadsheets
                // write) names no order and says nothing: not a row. A row
                // with anything in it but no key is a row error.
                if rec.iter().all(|c| c.trim_ascii().is_empty()) {
                    continue;
                }
                let mut bad_enc = false;
                // A UTF-8 row is checked once, whole, and its cells are cut
                // from it (delimiters are ASCII, so they fall on character
                // boundaries); one check per cell was a twentieth of the
                // parser's thread. A row that is not UTF-8 whole may still
                // be in its mapped cells: those are checked one by one.
                let whole = match d.encoding {
                    Encoding::Utf8 => std::str::from_utf8(rec.as_slice()).ok(),
                    Encoding::Latin1 => None,
                };
                let got = vendor.remote_order_into(
                    |c| {
                        let i = index
                            .iter()
                            .find(|(w, _)| std::ptr::eq(*w, c) || *w == c)?
                            .1;
                        if let Some(text) = whole {
                            return text.get(rec.range(i)?).map(Cow::Borrowed);
                        }
                        let b = rec.get(i)?;
                        let s = decode(b, d.encoding);
                        bad_enc |= s.is_none();
                        s
                    },
                    &mut order,
                );
                if bad_enc {
                    return Err(KeyFrameError::Encoding {
                        row,
                        encoding: enc_name(d.encoding),
                    });
                }
                read.take(row, got, &mut order, f);
            }
            Ok(read)
        }
    }
}

#[cfg(test)]
mod tests {
    /// The tap numbers literals as serde_json reads them, whatever pieces
    /// the bytes arrive in: strings (escaped quotes, digits, `-`) hold none,
    /// and only literals with more than 15 significant digits keep text.
    #[test]
    fn the_number_tap_finds_long_literals_in_any_pieces() {
        let doc = br#"{"a":"x\"1234567890123456789","n":[-0.5,1.00000000000000000001,12,
            "-9","\\",3.14159265358979323846e-2,1000000000000000000000,7]}"#;
        for piece in 1..=9 {
            let long = super::Numbers::default();
            let mut tap = super::NumberTap::default();
            for chunk in doc.chunks(piece) {
                tap.see_all(chunk, &long);
            }
            let found: Vec<(u64, String)> = long.found.borrow().iter().cloned().collect();
            assert_eq!(
                found,
                [
                    (2, "1.00000000000000000001".to_string()),
                    (4, "3.14159265358979323846e-2".to_string())
                ],
                "pieces of {piece}"
            );
            assert_eq!(tap.count, 6, "pieces of {piece}");
        }
    }

    use super::*;

    #[test]
    fn newest_match_skips_partial_and_hidden_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "orders-1.csv",
            "orders-2.csv",
            ".orders-3.csv",
            "orders-4.csv.part",
            "other.csv",
        ] {
            std::fs::write(dir.path().join(name), name).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let p = newest_match(dir.path(), "orders-*.csv").unwrap();
        assert_eq!(p.file_name().unwrap(), "orders-2.csv");
        assert!(matches!(
            newest_match(dir.path(), "none-*.csv"),
            Err(FetchError::NoMatch { .. })
        ));
    }

    /// A JSON export is read a record at a time, with what reading it whole
    /// gave: the records of a top-level array or of `items` (beside other
    /// keys, before or after it); a document with no such array, a wrong
    /// first record, a cut document, trailing text or two `items` lists
    /// are refused.
    #[test]
    fn json_exports_stream_as_they_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let v = VendorSettings::minimal("v");
        let read = |doc: &str| {
            let f = dir.path().join("x.json");
            std::fs::write(&f, doc).unwrap();
            let export = from_file(&f, &v).unwrap();
            let mut got = vec![];
            for_each_row(&export, &v, &mut |o| {
                got.push((std::mem::take(&mut o.order_ref), o.status))
            })
            .map(|n| (n.rows, got))
        };
        let two = |k: &str| {
            (
                2,
                vec![
                    ("A1".to_string(), Some(crate::model::Status::Scheduled)),
                    (k.to_string(), Some(crate::model::Status::Completed)),
                ],
            )
        };
        let recs = r#"[{"order_ref":"A1","status":"scheduled"},{"order_ref":"A2","status":"completed","x":[1,{"y":null}]}]"#;
        assert_eq!(read(recs).unwrap(), two("A2"));
        let wrapped =
            format!(r#"{{"meta":{{"items":[{{"order_ref":"no"}}]}},"items":{recs},"n":2}}"#);
        assert_eq!(read(&wrapped).unwrap(), two("A2"));
        // No records is an empty array, never a document without one.
        assert_eq!(read("[]").unwrap(), (0, vec![]));
        assert_eq!(read(r#"{"items":[],"n":0}"#).unwrap(), (0, vec![]));
        for (doc, why) in [
            (r#"{"count": 0}"#, "without an `items` array"),
            (
                r#"{"data": [{"order_ref":"A1"}]}"#,
                "without an `items` array",
            ),
            (
                r#"{"items": {"order_ref":"A1"}}"#,
                "invalid type: map, expected `items` to be an array",
            ),
            (
                r#"{"items": null}"#,
                "invalid type: null, expected `items` to be an array",
            ),
            (
                "42",
                "invalid type: integer `42`, expected an array of records",
            ),
            (
                r#""[]""#,
                "invalid type: string \"[]\", expected an array of records",
            ),
        ] {
            match read(doc) {
                Err(KeyFrameError::Json(e)) => assert!(e.contains(why), "{doc}: {e}"),
                other => panic!("{doc} must be refused, got {other:?}"),
            }
        }
        assert!(matches!(
            read(r#"[{"id":"A1"}]"#),
            Err(KeyFrameError::MissingColumn { .. })
        ));
        assert!(matches!(
            read(&recs[..recs.len() - 1]),
            Err(KeyFrameError::Cut(_))
        ));
        assert!(matches!(
            read(&format!("{recs} x")),
            Err(KeyFrameError::Json(_))
        ));
        assert!(matches!(
            read(&format!(r#"{{"items":{recs},"items":[]}}"#)),
            Err(KeyFrameError::Json(_))
        ));
    }

    /// `as_of` from a field reads an outline of the document: the first
    /// record and everything beside the records, never the other records.
    #[test]
    fn the_as_of_outline_keeps_the_first_record_and_what_is_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.json");
        let outline = |doc: &str| {
            std::fs::write(&f, doc).unwrap();
            read_json_outline(&f, SizeLimits::default())
        };
        let doc = r#"{"items":[{"order_ref":"A1","at":"2026-05-01T20:00:00Z"},{"order_ref":"A2"}],
                      "meta":{"exported_at":"2026-05-02T08:00:00Z","n":2.5,"ok":true,"x":null}}"#;
        assert_eq!(
            outline(doc).unwrap(),
            serde_json::json!({"items":[{"order_ref":"A1","at":"2026-05-01T20:00:00Z"}],
                               "meta":{"exported_at":"2026-05-02T08:00:00Z","n":2.5,"ok":true,"x":null}})
        );
        assert_eq!(outline("[[1,2],[3]]").unwrap(), serde_json::json!([[1]]));
        assert!(matches!(outline(&doc[..40]), Err(KeyFrameError::Cut(_))));
    }

    /// An API listing is read with the same rules as a JSON file: an item
    /// that is not a record, or has no key, is a row error, never skipped.
    #[test]
    fn api_listing_items_without_a_key_are_row_errors() {
        let v = VendorSettings::minimal("v");
        let records: Vec<serde_json::Value> = serde_json::from_str(
            r#"[{"order_ref":"A1","status":"scheduled"},7,{"status":"scheduled"},{"order_ref":"A4","status":null}]"#,
        )
        .unwrap();
        let mut got = vec![];
        let read = for_each_json(&records, &v, &mut |o| {
            got.push(std::mem::take(&mut o.order_ref))
        })
        .unwrap();
        assert_eq!((read.rows, got), (1, vec!["A1".to_string()]));
        assert_eq!(read.bad.count, 3);
        assert_eq!(
            read.bad.examples,
            [
                "row 2: `7` is not a record (an object of fields)",
                "row 3: column `order_ref`: no order key in this record",
                "row 4: column `status`: empty status",
            ]
        );
    }

    /// `as_of = "field:..."` reads a JSON export past its BOM too.
    #[test]
    fn the_as_of_outline_skips_a_utf8_bom() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.json");
        std::fs::write(&f, "\u{feff}{\"at\":\"2026-05-01T20:00:00Z\",\"items\":[]}").unwrap();
        let doc = read_json_outline(&f, SizeLimits::default()).unwrap();
        assert_eq!(doc["at"], "2026-05-01T20:00:00Z");
    }

    /// Cells are cut from a row checked as UTF-8 once: quoted delimiters,
    /// doubled quotes and multi-byte text come out whole; bytes that are not
    /// UTF-8 in a column nobody maps do not matter, in a mapped one they
    /// refuse the export naming the row.
    #[test]
    fn csv_cells_are_read_as_utf8_where_mapped() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.csv");
        let v = VendorSettings::minimal("v");
        let read = |bytes: &[u8]| {
            std::fs::write(&f, bytes).unwrap();
            let export = from_file(&f, &v).unwrap();
            let mut got = vec![];
            for_each_row(&export, &v, &mut |o| {
                got.push((std::mem::take(&mut o.order_ref), o.vendor_status.clone()))
            })
            .map(|_| got)
        };
        let got = read(
            b"order_ref,note,status\n\"A,1\",\"say \"\"hi\"\"\",scheduled\nA\xc3\xa92,\xff\xfe,completed\n",
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                ("A,1".to_string(), Some("scheduled".to_string())),
                ("A\u{e9}2".to_string(), Some("completed".to_string())),
            ]
        );
        let bad = read(b"order_ref,note,status\nA1,x,scheduled\nA2,x,compl\xffeted\n").unwrap_err();
        assert!(
            matches!(bad, KeyFrameError::Encoding { row: 3, .. }),
            "{bad:?}"
        );
    }

    #[test]
    fn headerless_csv_uses_column_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.tsv");
        std::fs::write(&f, "A1\tscheduled\nA2\tcompleted\n").unwrap();
        let mut v = VendorSettings::minimal("v");
        v.csv.has_header = false;
        v.csv.delimiter = b'\t';
        v.mapping.key = vec!["1".into()];
        v.mapping.status = Some("2".into());
        let export = from_file(&f, &v).unwrap();
        let mut got = vec![];
        let n = for_each_row(&export, &v, &mut |o| {
            got.push((std::mem::take(&mut o.order_ref), o.status))
        })
        .unwrap();
        assert_eq!(n.rows, 2);
        assert_eq!(
            got[1],
            ("A2".to_string(), Some(crate::model::Status::Completed))
        );
    }
}
