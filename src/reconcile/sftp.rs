//! `kind = "sftp"`: the newest complete export in a directory on an SFTP
//! server (the vendor's, or ours the vendor uploads to).
//!
//! Why it is careful: the cron-and-sftp-client job this replaces loses
//! files, half-copies them and fails silently. So a file is taken only when
//! it is complete (no `.part`/dot name, the same size and mtime in two
//! listings `settle_ms` apart, and its `ready_marker` present when one is
//! configured); it is downloaded whole into the data dir and checked against
//! the listed size before anything reads it; the server's host key must
//! match the configured one (never trusted on first use); the file taken is
//! remembered in its key frame (`etag` = name, size and mtime), so a rerun on
//! the same file is `unchanged` without downloading it again.
//!
//! Never: log a password or key; accept a host key that was not configured;
//! hand the planner a file that was not read to its listed end.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use russh::keys::{HashAlg, PublicKey, PublicKeyOrCertificate};
use russh_sftp::client::SftpSession;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info, warn};

use super::config::{AsOf, ExportFormat, RawExport};
use super::source::{Export, KeyFrameMeta, Previous};
use crate::secret::{Secret, SecretError};
use driftwatch_core::toml_source::{ConfigError, TomlSource};

/// What happens to the remote file after a run trusted it (outcome `ok`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum After {
    /// Leave it (the default): the next run sees it again and is `unchanged`.
    #[default]
    Keep,
    /// Rename it into `move_to`.
    Move,
    Delete,
}

/// How we prove who we are.
#[derive(Debug, Clone)]
pub enum Login {
    /// An OpenSSH private key (unencrypted), from a file or the environment.
    Key(Secret),
    Password(Secret),
}

/// The server key we expect; anything else is refused.
#[derive(Debug, Clone)]
pub enum HostKey {
    /// From a known-hosts line (`[host]:port ssh-ed25519 AAAA…`) or `type base64`.
    Key(PublicKey),
    /// `SHA256:…` as `ssh-keygen -lf` prints it.
    Sha256(String),
}

#[derive(Debug, Clone)]
pub struct SftpSettings {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub login: Login,
    pub host_key: HostKey,
    /// Remote directory (absolute, or relative to the login directory).
    pub dir: String,
    pub pattern: String,
    pub format: ExportFormat,
    pub as_of: AsOf,
    /// Two listings this far apart must agree on a file's size and mtime.
    pub settle: Duration,
    /// `{name}` is replaced by the export's name: e.g. `"{name}.done"`.
    pub ready_marker: Option<String>,
    pub after: After,
    pub move_to: Option<String>,
    /// Connect, authenticate, and each SFTP request.
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SftpError {
    #[error("cannot connect to {server}: {message}")]
    Connect { server: String, message: String },
    #[error(
        "host key of {server} is not the configured one: the server offered {offered}; nothing was read. If the vendor changed its key, check the new one with them and update export.host_key / host_key_sha256"
    )]
    HostKey { server: String, offered: String },
    #[error("login as `{user}` on {server} was refused ({method})")]
    Login {
        server: String,
        user: String,
        method: &'static str,
    },
    #[error("the private key for {server} cannot be read: {message}")]
    Key { server: String, message: String },
    #[error("SFTP on {server}: {message}")]
    Protocol { server: String, message: String },
    #[error(
        "{path} on {server} ended after {got} of {expected} bytes (connection lost or file changed); nothing is used"
    )]
    Short {
        server: String,
        path: String,
        got: u64,
        expected: u64,
    },
    #[error("{path} on {server} changed while it was downloaded; nothing is used")]
    Changed { server: String, path: String },
    #[error("no complete file in {dir} on {server} matches `{pattern}`{detail}")]
    NoMatch {
        server: String,
        dir: String,
        pattern: String,
        detail: String,
    },
    #[error("secret: {0}")]
    Secret(SecretError),
    #[error("cannot write the download {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl From<SecretError> for SftpError {
    fn from(e: SecretError) -> SftpError {
        SftpError::Secret(e)
    }
}

/// Validates the sftp keys of `[vendor.export]`.
pub(super) fn validate(
    src: &TomlSource,
    ek: &dyn Fn(&str) -> String,
    e: &RawExport,
    as_of: AsOf,
    timeout: Duration,
    rel: &dyn Fn(&Path) -> PathBuf,
) -> Result<SftpSettings, ConfigError> {
    let need = |v: &Option<String>, k: &str| {
        v.clone()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| src.error(&ek("kind"), format!("missing key `{k}`")))
    };
    let login = match (&e.key_file, &e.key_env, &e.password_file, &e.password_env) {
        (Some(p), None, None, None) => Login::Key(Secret::File(rel(p))),
        (None, Some(v), None, None) => Login::Key(Secret::Env(v.clone())),
        (None, None, Some(p), None) => Login::Password(Secret::File(rel(p))),
        (None, None, None, Some(v)) => Login::Password(Secret::Env(v.clone())),
        _ => {
            return Err(src.error(
                &ek("kind"),
                "sftp needs exactly one of `key_file`, `key_env`, `password_file`, `password_env`",
            ));
        }
    };
    let host_key = match (&e.host_key, &e.host_key_sha256) {
        (Some(line), None) => {
            HostKey::Key(parse_known_host(line).map_err(|m| src.error(&ek("host_key"), m))?)
        }
        (None, Some(fp)) => {
            let fp = fp.trim();
            if !fp.starts_with("SHA256:") || fp.len() < 20 {
                return Err(src.error(
                    &ek("host_key_sha256"),
                    "expected `SHA256:…` as `ssh-keygen -lf KEY.pub` prints it",
                ));
            }
            HostKey::Sha256(fp.trim_end_matches('=').to_string())
        }
        _ => {
            return Err(src.error(
                &ek("kind"),
                "sftp needs the server's key: `host_key` (a known_hosts line) or `host_key_sha256`; it is never accepted unverified",
            ));
        }
    };
    let after = e.after.unwrap_or_default();
    if after == After::Move && e.move_to.as_deref().is_none_or(|m| m.trim().is_empty()) {
        return Err(src.error(
            &ek("after"),
            "\"move\" needs `move_to` (a remote directory)",
        ));
    }
    if matches!(as_of, AsOf::Header(_) | AsOf::Body(_)) {
        return Err(src.error(
            &ek("as_of"),
            "sftp takes \"modified\" (the file's mtime, the default) or \"field:COLUMN\"",
        ));
    }
    let dir = e
        .dir
        .as_ref()
        .map(|d| d.to_string_lossy().into_owned())
        .ok_or_else(|| src.error(&ek("kind"), "missing key `dir`"))?;
    Ok(SftpSettings {
        host: need(&e.host, "host")?,
        port: e.port.unwrap_or(22),
        user: need(&e.user, "user")?,
        login,
        host_key,
        dir,
        pattern: need(&e.pattern, "pattern")?,
        format: e.format.unwrap_or(ExportFormat::Csv),
        as_of,
        settle: Duration::from_millis(e.settle_ms.unwrap_or(2000)),
        ready_marker: e.ready_marker.clone(),
        after,
        move_to: e.move_to.clone(),
        timeout,
    })
}

/// A known_hosts line (`host[,host] type base64 [comment]`, markers such as
/// `@cert-authority` refused) or a bare `type base64`.
pub fn parse_known_host(line: &str) -> Result<PublicKey, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.first().is_some_and(|w| w.starts_with('@')) {
        return Err("known_hosts markers (@cert-authority, @revoked) are not supported".into());
    }
    let at = words
        .iter()
        .position(|w| w.starts_with("ssh-") || w.starts_with("ecdsa-") || w.starts_with("sk-"))
        .ok_or("expected a known_hosts line or `TYPE BASE64` (e.g. `ssh-ed25519 AAAAC3…`)")?;
    let (kind, b64) = (
        words[at],
        words.get(at + 1).ok_or("the key's base64 is missing")?,
    );
    PublicKey::from_openssh(&format!("{kind} {b64}"))
        .map_err(|e| format!("not a valid public key: {e}"))
}

/// `sftp://user@host:port` + path: the key frame's source.
fn server(s: &SftpSettings) -> String {
    format!("{}:{}", s.host, s.port)
}

fn source_of(s: &SftpSettings, path: &str) -> String {
    format!(
        "sftp://{}@{}:{}/{}",
        s.user,
        s.host,
        s.port,
        path.trim_start_matches('/')
    )
}

/// The remote path a key frame's source names (for the after-run action).
fn path_of(s: &SftpSettings, source: &str) -> Option<String> {
    let rest = source.strip_prefix(&format!("sftp://{}@{}:{}/", s.user, s.host, s.port))?;
    Some(if s.dir.starts_with('/') {
        format!("/{rest}")
    } else {
        rest.to_string()
    })
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() || dir == "." {
        name.to_string()
    } else {
        format!("{}/{name}", dir.trim_end_matches('/'))
    }
}

/// Checks the server's key against the configured one and remembers what
/// was offered, for the error message.
struct Verifier {
    expected: HostKey,
    offered: Arc<Mutex<Option<String>>>,
}

impl russh::client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            if let Ok(mut o) = self.offered.lock() {
                *o = Some("a certificate (only plain host keys are supported)".into());
            }
            return Ok(false);
        };
        let fp = key.fingerprint(HashAlg::Sha256).to_string();
        let ok = match &self.expected {
            HostKey::Key(k) => k.key_data() == key.key_data(),
            HostKey::Sha256(want) => fp.trim_end_matches('=') == want,
        };
        if let Ok(mut o) = self.offered.lock() {
            *o = Some(format!("{} {fp}", key.algorithm()));
        }
        Ok(ok)
    }
}

/// One logged-in SFTP session.
struct Connection {
    ssh: russh::client::Handle<Verifier>,
    sftp: SftpSession,
    server: String,
}

impl Connection {
    async fn open(s: &SftpSettings) -> Result<Connection, SftpError> {
        let server = server(s);
        let offered = Arc::new(Mutex::new(None));
        let verifier = Verifier {
            expected: s.host_key.clone(),
            offered: offered.clone(),
        };
        let config = Arc::new(russh::client::Config {
            inactivity_timeout: Some(s.timeout),
            ..Default::default()
        });
        let connect = russh::client::connect(config, (s.host.as_str(), s.port), verifier);
        let mut ssh = match tokio::time::timeout(s.timeout, connect).await {
            Err(_) => {
                return Err(SftpError::Connect {
                    server,
                    message: format!("no answer within {} s", s.timeout.as_secs()),
                });
            }
            Ok(Err(e)) => {
                let seen = offered.lock().ok().and_then(|o| o.clone());
                return Err(match (e, seen) {
                    (russh::Error::UnknownKey, Some(offered)) => {
                        SftpError::HostKey { server, offered }
                    }
                    (e, _) => SftpError::Connect {
                        server,
                        message: e.to_string(),
                    },
                });
            }
            Ok(Ok(h)) => h,
        };
        let proto = |server: &str| {
            let server = server.to_string();
            move |e: russh::Error| SftpError::Protocol {
                server,
                message: e.to_string(),
            }
        };
        let (ok, method) = match &s.login {
            Login::Password(secret) => {
                let pw = secret.resolve().await?;
                let r = ssh
                    .authenticate_password(s.user.clone(), pw)
                    .await
                    .map_err(proto(&server))?;
                (r.success(), "password")
            }
            Login::Key(secret) => {
                let text = secret.resolve().await?;
                let key =
                    russh::keys::decode_secret_key(&text, None).map_err(|e| SftpError::Key {
                        server: server.clone(),
                        message: e.to_string(),
                    })?;
                let hash = ssh
                    .best_supported_rsa_hash()
                    .await
                    .map_err(proto(&server))?
                    .flatten();
                let r = ssh
                    .authenticate_publickey(
                        s.user.clone(),
                        russh::keys::PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                    )
                    .await
                    .map_err(proto(&server))?;
                (r.success(), "public key")
            }
        };
        if !ok {
            return Err(SftpError::Login {
                server,
                user: s.user.clone(),
                method,
            });
        }
        let channel = ssh.channel_open_session().await.map_err(proto(&server))?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(proto(&server))?;
        let sftp =
            SftpSession::new(channel.into_stream())
                .await
                .map_err(|e| SftpError::Protocol {
                    server: server.clone(),
                    message: e.to_string(),
                })?;
        sftp.set_timeout(s.timeout.as_secs().max(1));
        Ok(Connection { ssh, sftp, server })
    }

    fn err(&self, what: &str, e: russh_sftp::client::error::Error) -> SftpError {
        SftpError::Protocol {
            server: self.server.clone(),
            message: format!("{what}: {e}"),
        }
    }

    /// Files in `dir` matching `pattern`: (name, size, mtime).
    async fn list(&self, s: &SftpSettings) -> Result<Vec<Listed>, SftpError> {
        let dir = if s.dir.is_empty() {
            "."
        } else {
            s.dir.as_str()
        };
        let entries = self
            .sftp
            .read_dir(dir)
            .await
            .map_err(|e| self.err(&format!("listing {dir}"), e))?;
        Ok(entries
            .filter_map(|e| {
                let m = e.metadata();
                Some(Listed {
                    name: e.file_name(),
                    is_file: m.is_regular(),
                    size: m.size?,
                    mtime: m.mtime?,
                })
            })
            .collect())
    }

    async fn close(self) {
        let _ = self.sftp.close().await;
        let _ = self
            .ssh
            .disconnect(russh::Disconnect::ByApplication, "", "")
            .await;
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    name: String,
    is_file: bool,
    size: u64,
    mtime: u32,
}

impl Listed {
    /// What a key frame remembers of the file it came from.
    fn identity(&self) -> String {
        format!("sftp:{}:{}:{}", self.name, self.size, self.mtime)
    }

    fn modified(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(i64::from(self.mtime), 0).unwrap_or_default()
    }
}

/// The candidates newest first: matching, not hidden, not `.part`, regular.
fn candidates(s: &SftpSettings, listing: &[Listed]) -> Vec<Listed> {
    let mut c: Vec<Listed> = listing
        .iter()
        .filter(|l| {
            l.is_file
                && !l.name.starts_with('.')
                && !l.name.ends_with(".part")
                && crate::parse::glob_match(&s.pattern, &l.name)
        })
        .cloned()
        .collect();
    c.sort_by(|a, b| (b.mtime, &b.name).cmp(&(a.mtime, &a.name)));
    c
}

/// Why a candidate is not taken yet, or `None` when it is complete.
fn not_ready(
    s: &SftpSettings,
    c: &Listed,
    first: &[Listed],
    second: &[Listed],
) -> Option<&'static str> {
    if !first.iter().any(|l| l == c) {
        return Some("its size or mtime changed between two listings (still being written)");
    }
    if let Some(m) = &s.ready_marker {
        let marker = m.replace("{name}", &c.name);
        if !second.iter().any(|l| l.name == marker) {
            return Some("its ready marker is not there yet");
        }
    }
    None
}

/// Fetches the newest complete file, or `NotModified` when it is the one
/// the last trusted key frame came from (or older than it), or when no new
/// complete file is there and a trusted key frame exists (the overdue alert
/// says when that lasts too long).
pub(super) async fn fetch(
    s: &SftpSettings,
    vendor: &str,
    previous: &Previous,
    work_dir: &Path,
) -> Result<Export, SftpError> {
    let conn = Connection::open(s).await?;
    let result = fetch_on(&conn, s, vendor, previous, work_dir).await;
    conn.close().await;
    result
}

async fn fetch_on(
    conn: &Connection,
    s: &SftpSettings,
    vendor: &str,
    previous: &Previous,
    work_dir: &Path,
) -> Result<Export, SftpError> {
    let fetched_at = Utc::now();
    let first = conn.list(s).await?;
    tokio::time::sleep(s.settle).await;
    let second = conn.list(s).await?;
    let mut skipped = Vec::new();
    let mut chosen = None;
    for c in candidates(s, &second) {
        match not_ready(s, &c, &first, &second) {
            Some(why) => {
                debug!(vendor, file = %c.name, why, "sftp file skipped");
                skipped.push(format!("{} ({why})", c.name));
            }
            None => {
                chosen = Some(c);
                break;
            }
        }
    }
    let unchanged = |why: &str| {
        info!(vendor, why, "sftp export unchanged");
        Export::not_modified(KeyFrameMeta::fetched(source_of(s, &s.dir), fetched_at))
    };
    let Some(c) = chosen else {
        if previous.as_of.is_some() {
            return Ok(unchanged("no new complete file"));
        }
        return Err(SftpError::NoMatch {
            server: conn.server.clone(),
            dir: s.dir.clone(),
            pattern: s.pattern.clone(),
            detail: if skipped.is_empty() {
                String::new()
            } else {
                format!(" (skipped: {})", skipped.join(", "))
            },
        });
    };
    if previous.etag.as_deref() == Some(c.identity().as_str()) {
        return Ok(unchanged("same file as the last trusted key frame"));
    }
    if s.as_of == AsOf::Modified && previous.as_of.is_some_and(|p| c.modified() < p) {
        return Ok(unchanged(
            "the newest complete file is older than the last trusted key frame",
        ));
    }
    let path = join(&s.dir, &c.name);
    let local = download(conn, vendor, &c, &path, work_dir).await?;
    // The same size and mtime after the download as in the listing.
    let after = conn
        .sftp
        .metadata(path.clone())
        .await
        .map_err(|e| conn.err(&format!("stat {path}"), e))?;
    if after.size != Some(c.size) || after.mtime != Some(c.mtime) {
        let _ = std::fs::remove_file(&local.0);
        return Err(SftpError::Changed {
            server: conn.server.clone(),
            path,
        });
    }
    let (file, hash) = local;
    let (as_of, as_of_field) = match &s.as_of {
        AsOf::Field(f) => (None, Some(f.clone())),
        _ => (Some(c.modified()), None),
    };
    let mut meta = KeyFrameMeta::fetched(source_of(s, &path), fetched_at);
    meta.as_of = as_of;
    meta.content_hash = hash;
    meta.etag = Some(c.identity());
    info!(vendor, file = %c.name, bytes = c.size, "sftp export downloaded");
    Ok(Export::download(meta, file, s.format, as_of_field))
}

/// Downloads into the work dir, hashing the file's identity and its bytes
/// (so a new drop with the same content is a new key frame, with its own
/// as-of), and checks the byte count against the listing.
async fn download(
    conn: &Connection,
    vendor: &str,
    c: &Listed,
    path: &str,
    work_dir: &Path,
) -> Result<(PathBuf, [u8; 32]), SftpError> {
    let local = work_dir.join(format!(
        "{}-{}.sftp",
        vendor.replace(['/', '\\'], "_"),
        Utc::now().timestamp_micros()
    ));
    let io = |error| SftpError::Io {
        path: local.clone(),
        error,
    };
    // Vendor data: 0700/0600 whatever the umask.
    crate::private_files::create_dir(work_dir).map_err(io)?;
    let mut remote = conn
        .sftp
        .open(path.to_string())
        .await
        .map_err(|e| conn.err(&format!("open {path}"), e))?;
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(crate::private_files::FILE_MODE)
            .open(&local)
            .map_err(io)?
    };
    let mut out = tokio::fs::File::from_std(file);
    let mut h = super::source::ContentHasher::new();
    h.update(c.identity().as_bytes());
    h.update(&[0u8]);
    let mut buf = vec![0u8; 1 << 16];
    let mut got: u64 = 0;
    let copied: Result<(), SftpError> = async {
        loop {
            let n = remote
                .read(&mut buf)
                .await
                .map_err(|e| SftpError::Protocol {
                    server: conn.server.clone(),
                    message: format!("reading {path}: {e}"),
                })?;
            if n == 0 {
                break;
            }
            got += n as u64;
            h.update(&buf[..n]);
            out.write_all(&buf[..n]).await.map_err(io)?;
        }
        out.flush().await.map_err(io)?;
        if got != c.size {
            return Err(SftpError::Short {
                server: conn.server.clone(),
                path: path.to_string(),
                got,
                expected: c.size,
            });
        }
        Ok(())
    }
    .await;
    let _ = remote.shutdown().await;
    if let Err(e) = copied {
        drop(out);
        let _ = tokio::fs::remove_file(&local).await;
        return Err(e);
    }
    Ok((local, h.finalize().into()))
}

/// After a trusted run (outcome `ok`): moves or deletes the file it came
/// from. A failure is logged, not fatal: the run has committed, and the
/// next run recognises the file by its name, size and mtime.
pub(super) async fn after_trusted(s: &SftpSettings, vendor: &str, source: &str) {
    if s.after == After::Keep {
        return;
    }
    let Some(path) = path_of(s, source) else {
        return;
    };
    let done = async {
        let conn = Connection::open(s).await?;
        let r = match s.after {
            After::Keep => Ok(()),
            After::Delete => conn.sftp.remove_file(path.clone()).await,
            After::Move => {
                let name = path.rsplit('/').next().unwrap_or(&path).to_string();
                let to_dir = s.move_to.clone().unwrap_or_default();
                let to_dir = if to_dir.starts_with('/') {
                    to_dir
                } else {
                    join(&s.dir, &to_dir)
                };
                conn.sftp.rename(path.clone(), join(&to_dir, &name)).await
            }
        }
        .map_err(|e| conn.err(&format!("after-run action on {path}"), e));
        conn.close().await;
        r
    }
    .await;
    match done {
        Ok(()) => {
            info!(vendor, file = %path, action = ?s.after, "sftp export handled after a trusted run")
        }
        Err(e) => {
            warn!(vendor, file = %path, error = %e, "sftp after-run action failed; the file stays")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(name: &str, size: u64, mtime: u32) -> Listed {
        Listed {
            name: name.into(),
            is_file: true,
            size,
            mtime,
        }
    }

    #[test]
    fn known_hosts_lines_and_bare_keys_parse_and_markers_are_refused() {
        let k = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMx0Q8iwIqQ2v0dX9b1Lq9w9yW8bQeJdOq6c0b1h1y9K";
        assert!(parse_known_host(k).is_ok());
        assert!(parse_known_host(&format!("[127.0.0.1]:2222 {k} comment")).is_ok());
        assert!(parse_known_host(&format!("@cert-authority * {k}")).is_err());
        assert!(parse_known_host("not a key").is_err());
    }

    #[test]
    fn newest_complete_file_skips_part_hidden_and_growing_files() {
        let s = SftpSettings {
            host: "h".into(),
            port: 22,
            user: "u".into(),
            login: Login::Password(Secret::Env("X".into())),
            host_key: HostKey::Sha256("SHA256:x".into()),
            dir: "out".into(),
            pattern: "orders-*.csv".into(),
            format: ExportFormat::Csv,
            as_of: AsOf::Modified,
            settle: Duration::ZERO,
            ready_marker: None,
            after: After::Keep,
            move_to: None,
            timeout: Duration::from_secs(5),
        };
        let first = vec![
            listed("orders-1.csv", 10, 100),
            listed("orders-2.csv", 10, 200),
            listed("orders-3.csv.part", 10, 300),
            listed(".orders-4.csv", 10, 400),
        ];
        let mut second = first.clone();
        second.push(listed("orders-5.csv", 5, 500));
        let c = candidates(&s, &second);
        assert_eq!(c[0].name, "orders-5.csv");
        assert!(not_ready(&s, &c[0], &first, &second).is_some());
        assert_eq!(not_ready(&s, &c[1], &first, &second), None);
        assert_eq!(c[1].name, "orders-2.csv");
        let marked = SftpSettings {
            ready_marker: Some("{name}.done".into()),
            ..s.clone()
        };
        assert!(not_ready(&marked, &c[1], &first, &second).is_some());
        second.push(listed("orders-2.csv.done", 0, 201));
        assert_eq!(not_ready(&marked, &c[1], &first, &second), None);
        assert_eq!(
            path_of(&s, &source_of(&s, "out/orders-2.csv")).as_deref(),
            Some("out/orders-2.csv")
        );
    }
}
