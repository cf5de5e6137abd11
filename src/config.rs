//! Typed configuration from one TOML file.
//!
//! Errors name the file, the line and the key, because the person reading them
//! is editing that file. Unknown keys are errors (a typo must not silently fall
//! back to a default). Secrets are references (`password_env`,
//! `password_file`), resolved when used and never printed: see [`Secret`].
//! Relative paths are relative to the config file, so a config works from any
//! working directory. Environment variables win over the file for the few
//! settings operators override per deployment (`DRIFTWATCH_DATA_DIR`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use driftwatch_core::toml_source::{ConfigError, TomlSource};

/// Reads a TOML file for [`TomlSource`] (core does no IO, so the reading is here).
pub fn read_toml(file: &Path) -> Result<TomlSource, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
        file: file.to_path_buf(),
        line: None,
        key: None,
        message: format!("cannot read: {e}"),
    })?;
    Ok(TomlSource::new(file, text))
}

/// A secret: resolved from the environment or a file when needed, never shown
/// by `Debug` or `Display`, so it cannot leak through logs.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Env(String),
    File(PathBuf),
    Command(String),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Env(var) => write!(f, "Secret(env {var})"),
            Secret::File(p) => write!(f, "Secret(file {})", p.display()),
            Secret::Command(_) => write!(f, "Secret(command)"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set")]
    EnvMissing(String),
    #[error("cannot read secret file {0}: {1}")]
    File(PathBuf, std::io::Error),
    #[error("secret command failed: {0}")]
    Command(String),
    #[error("secret command did not finish within {} s and was killed", .0.as_secs())]
    CommandTimeout(Duration),
    #[error("secret is empty")]
    Empty,
}

/// How long a token command (`oauth2_token_command`) may run before it is
/// killed: a hung helper must not hang the connect that waits for it.
pub const SECRET_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

impl Secret {
    /// Reads the current value. Called at each connect so rotated passwords
    /// and short-lived OAuth tokens are picked up without a restart. Files are
    /// read and commands run off the async worker threads; a command is
    /// killed after [`SECRET_COMMAND_TIMEOUT`]. A secret file readable by
    /// group or others is warned about (once). The value is registered with
    /// [`crate::logging::register_secret`] so no log line can show it.
    pub async fn resolve(&self) -> Result<String, SecretError> {
        self.resolve_within(SECRET_COMMAND_TIMEOUT).await
    }

    async fn resolve_within(&self, limit: Duration) -> Result<String, SecretError> {
        let v = match self {
            Secret::Env(var) => {
                std::env::var(var).map_err(|_| SecretError::EnvMissing(var.clone()))?
            }
            Secret::File(p) => {
                crate::private_files::warn_if_open(p, "secret file");
                tokio::fs::read_to_string(p)
                    .await
                    .map_err(|e| SecretError::File(p.clone(), e))?
            }
            Secret::Command(cmd) => {
                let child = tokio::process::Command::new("sh")
                    .arg("-c")
                    .arg(cmd)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| SecretError::Command(e.to_string()))?;
                let out = tokio::time::timeout(limit, child.wait_with_output())
                    .await
                    .map_err(|_| SecretError::CommandTimeout(limit))?
                    .map_err(|e| SecretError::Command(e.to_string()))?;
                if !out.status.success() {
                    // stderr may be informative; stdout might hold a partial secret, so it is not shown.
                    return Err(SecretError::Command(format!(
                        "exit {}: {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    )));
                }
                String::from_utf8_lossy(&out.stdout).into_owned()
            }
        };
        let v = v.trim_end_matches(['\r', '\n']).to_string();
        if v.is_empty() {
            return Err(SecretError::Empty);
        }
        crate::logging::register_secret(&v);
        Ok(v)
    }
}

// ---------------------------------------------------------------------------
// The file format.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    data_dir: Option<PathBuf>,
    database: Option<PathBuf>,
    parsers_dir: Option<PathBuf>,
    #[serde(default)]
    ingest: RawIngest,
    #[serde(default)]
    mailbox: Vec<RawMailbox>,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    vendor: Vec<crate::reconcile::config::RawVendor>,
    report: Option<crate::report::config::RawReport>,
    http: Option<crate::http::config::RawHttp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<LogFormat>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIngest {
    #[serde(default)]
    ignore_senders: Vec<String>,
    #[serde(default)]
    authserv_ids: Vec<String>,
    max_message_bytes: Option<u64>,
    batch_max_messages: Option<usize>,
    batch_max_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMailbox {
    name: String,
    kind: MailboxKind,
    // imap
    host: Option<String>,
    port: Option<u16>,
    tls: Option<TlsMode>,
    ca_file: Option<PathBuf>,
    tls_pin_sha256: Option<OneOrMany>,
    allow_plaintext: Option<bool>,
    username: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    oauth2_token_file: Option<PathBuf>,
    oauth2_token_command: Option<String>,
    folders: Option<Vec<String>>,
    idle: Option<bool>,
    idle_refresh_secs: Option<u64>,
    after_processing: Option<AfterProcessing>,
    flag: Option<String>,
    move_to: Option<String>,
    connect_timeout_secs: Option<u64>,
    op_timeout_secs: Option<u64>,
    // maildir
    path: Option<PathBuf>,
    // both
    poll_interval_secs: Option<u64>,
}

/// `key = "x"` or `key = ["x", "y"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum MailboxKind {
    Imap,
    Maildir,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (port 993).
    Implicit,
    /// Plain connect, then STARTTLS before anything else is sent (port 143).
    Starttls,
    /// No TLS at all; refused unless `allow_plaintext = true`.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AfterProcessing {
    /// Leave the mailbox exactly as it was: safe on a shared mailbox.
    None,
    /// Set a keyword on processed messages.
    Flag,
    /// Move processed messages to another folder.
    Move,
}

// ---------------------------------------------------------------------------
// The validated settings.

#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub database: PathBuf,
    pub parsers_dir: PathBuf,
    pub ingest: IngestSettings,
    pub mailboxes: Vec<Mailbox>,
    pub log_format: LogFormat,
    /// Reconcile settings per vendor (`[[vendor]]`).
    pub vendors: Vec<crate::reconcile::config::VendorSettings>,
    /// The daily report (`[report]`); `None` when not configured.
    pub report: Option<crate::report::config::ReportSettings>,
    /// The HTTP API (`[http]`); `None` when the table is absent or `enabled = false`.
    pub http: Option<crate::http::config::HttpSettings>,
}

#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// Sender patterns (`*@corp.example`) whose mail is archived as ignored.
    pub ignore_senders: Vec<String>,
    /// authserv-ids of our receiving servers (trusted Authentication-Results).
    pub authserv_ids: Vec<String>,
    pub max_message_bytes: u64,
    pub batch_max_messages: usize,
    pub batch_max_bytes: u64,
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            ignore_senders: vec![],
            authserv_ids: vec![],
            max_message_bytes: 25 * 1024 * 1024,
            batch_max_messages: 200,
            batch_max_bytes: 16 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // a few per config, built once: boxing buys nothing
pub enum Mailbox {
    Imap(ImapSettings),
    Maildir(MaildirSettings),
}

impl Mailbox {
    pub fn name(&self) -> &str {
        match self {
            Mailbox::Imap(m) => &m.name,
            Mailbox::Maildir(m) => &m.name,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ImapSettings {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub ca_file: Option<PathBuf>,
    /// SHA-256 of the server certificates trusted as they are
    /// (`tls_pin_sha256`); when set, nothing else is trusted.
    pub tls_pins: Vec<crate::ingest::Pin>,
    pub username: String,
    pub auth: ImapAuth,
    pub folders: Vec<String>,
    pub idle: bool,
    /// Re-issue IDLE this often: servers and NAT boxes drop idle connections
    /// well before the RFC's 29 minutes.
    pub idle_refresh: Duration,
    pub poll_interval: Duration,
    pub connect_timeout: Duration,
    /// How long one IMAP command (or one batch fetch) may take before the
    /// connection is presumed dead and reopened: a stalled server or a
    /// half-open TCP connection must not hang a source.
    pub op_timeout: Duration,
    pub after_processing: AfterAction,
}

#[derive(Debug, Clone)]
pub enum ImapAuth {
    Password(Secret),
    XOAuth2(Secret),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterAction {
    None,
    Flag(String),
    Move(String),
}

#[derive(Debug, Clone)]
pub struct MaildirSettings {
    pub name: String,
    pub path: PathBuf,
    pub poll_interval: Duration,
}

impl Config {
    /// The settings used when there is no config file (`parsers test` in a
    /// checkout): `./parsers`, a database under `./data`, no mailboxes.
    pub fn defaults_in(dir: &Path) -> Config {
        Config {
            file: dir.join("driftwatch.toml"),
            database: dir.join("data/driftwatch.db"),
            parsers_dir: dir.join("parsers"),
            ingest: IngestSettings::default(),
            mailboxes: vec![],
            log_format: LogFormat::Text,
            vendors: vec![],
            report: None,
            http: None,
        }
    }

    /// Loads and validates a config file. Every problem names the file, the
    /// key and the line.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let src = read_toml(file)?;
        let raw: RawConfig = src.parse()?;
        let base = file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let rel = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };

        let data_dir = match std::env::var_os("DRIFTWATCH_DATA_DIR") {
            Some(d) => PathBuf::from(d),
            None => rel(raw.data_dir.as_deref().unwrap_or(Path::new("data"))),
        };
        let database = match &raw.database {
            Some(p) if p.is_absolute() => p.clone(),
            Some(p) => data_dir.join(p),
            None => data_dir.join("driftwatch.db"),
        };
        let parsers_dir = rel(raw.parsers_dir.as_deref().unwrap_or(Path::new("parsers")));

        let d = IngestSettings::default();
        let ingest = IngestSettings {
            ignore_senders: raw
                .ingest
                .ignore_senders
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            authserv_ids: raw.ingest.authserv_ids.clone(),
            max_message_bytes: raw.ingest.max_message_bytes.unwrap_or(d.max_message_bytes),
            batch_max_messages: raw
                .ingest
                .batch_max_messages
                .unwrap_or(d.batch_max_messages),
            batch_max_bytes: raw.ingest.batch_max_bytes.unwrap_or(d.batch_max_bytes),
        };
        if ingest.batch_max_messages == 0 {
            return Err(src.error("ingest.batch_max_messages", "must be at least 1"));
        }

        let mut mailboxes = Vec::new();
        for (i, m) in raw.mailbox.into_iter().enumerate() {
            let key = |k: &str| format!("mailbox[{i}].{k}");
            if mailboxes.iter().any(|x: &Mailbox| x.name() == m.name) {
                return Err(src.error(&key("name"), format!("duplicate mailbox name `{}`", m.name)));
            }
            let poll_interval = Duration::from_secs(m.poll_interval_secs.unwrap_or(60).max(1));
            let mailbox = match m.kind {
                MailboxKind::Maildir => {
                    for (set, k) in [
                        (m.host.is_some(), "host"),
                        (m.username.is_some(), "username"),
                        (m.tls.is_some(), "tls"),
                        (m.folders.is_some(), "folders"),
                    ] {
                        if set {
                            return Err(src.error(&key(k), "only applies to kind = \"imap\""));
                        }
                    }
                    let path = m
                        .path
                        .ok_or_else(|| src.error(&key("path"), "missing: the Maildir directory"))?;
                    Mailbox::Maildir(MaildirSettings {
                        name: m.name,
                        path: rel(&path),
                        poll_interval,
                    })
                }
                MailboxKind::Imap => {
                    if m.path.is_some() {
                        return Err(src.error(&key("path"), "only applies to kind = \"maildir\""));
                    }
                    let host = m
                        .host
                        .ok_or_else(|| src.error(&key("kind"), "missing key `host`"))?;
                    let tls = m.tls.unwrap_or(TlsMode::Implicit);
                    if tls == TlsMode::None && m.allow_plaintext != Some(true) {
                        return Err(src.error(
                            &key("tls"),
                            "tls = \"none\" sends the password in clear; set allow_plaintext = true to confirm",
                        ));
                    }
                    let username = m
                        .username
                        .ok_or_else(|| src.error(&key("kind"), "missing key `username`"))?;
                    let secrets = [
                        m.password_env
                            .clone()
                            .map(|v| ("password_env", ImapAuth::Password(Secret::Env(v)))),
                        m.password_file
                            .as_ref()
                            .map(|p| ("password_file", ImapAuth::Password(Secret::File(rel(p))))),
                        m.oauth2_token_file.as_ref().map(|p| {
                            ("oauth2_token_file", ImapAuth::XOAuth2(Secret::File(rel(p))))
                        }),
                        m.oauth2_token_command.clone().map(|c| {
                            (
                                "oauth2_token_command",
                                ImapAuth::XOAuth2(Secret::Command(c)),
                            )
                        }),
                    ];
                    let mut given = secrets.into_iter().flatten();
                    let auth = match (given.next(), given.next()) {
                        (Some((_, a)), None) => a,
                        (None, _) => {
                            return Err(src.error(
                                &key("username"),
                                "no credentials: set one of password_env, password_file, oauth2_token_file, oauth2_token_command",
                            ));
                        }
                        (Some((a, _)), Some((b, _))) => {
                            return Err(src.error(
                                &key(b),
                                format!("conflicts with `{a}`: give one credential source"),
                            ));
                        }
                    };
                    let ca_file = m.ca_file.as_ref().map(|p| rel(p));
                    if let Some(ca) = &ca_file
                        && !ca.is_file()
                    {
                        return Err(
                            src.error(&key("ca_file"), format!("no such file: {}", ca.display()))
                        );
                    }
                    let pins = match m.tls_pin_sha256 {
                        None => vec![],
                        Some(OneOrMany::One(p)) => vec![p],
                        Some(OneOrMany::Many(v)) => v,
                    };
                    if tls == TlsMode::None && !pins.is_empty() {
                        return Err(src.error(
                            &key("tls_pin_sha256"),
                            "needs tls = \"implicit\" or \"starttls\"",
                        ));
                    }
                    let tls_pins = pins
                        .iter()
                        .map(|p| crate::ingest::parse_pin(p))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| src.error(&key("tls_pin_sha256"), e))?;
                    let folders = m.folders.unwrap_or_else(|| vec!["INBOX".to_string()]);
                    if folders.is_empty() {
                        return Err(src.error(&key("folders"), "must list at least one folder"));
                    }
                    let after_processing = match m.after_processing.unwrap_or(AfterProcessing::None)
                    {
                        AfterProcessing::None => AfterAction::None,
                        AfterProcessing::Flag => {
                            AfterAction::Flag(m.flag.unwrap_or_else(|| "$Driftwatch".into()))
                        }
                        AfterProcessing::Move => AfterAction::Move(m.move_to.ok_or_else(|| {
                            src.error(
                                &key("after_processing"),
                                "after_processing = \"move\" needs `move_to = \"Folder\"`",
                            )
                        })?),
                    };
                    let idle_refresh = Duration::from_secs(m.idle_refresh_secs.unwrap_or(300));
                    if !(30..=1500).contains(&idle_refresh.as_secs()) {
                        return Err(src.error(
                            &key("idle_refresh_secs"),
                            "must be between 30 and 1500 seconds (servers drop IDLE after 30 minutes; 300 is a safe default)",
                        ));
                    }
                    Mailbox::Imap(ImapSettings {
                        name: m.name,
                        port: m.port.unwrap_or(match tls {
                            TlsMode::Implicit => 993,
                            _ => 143,
                        }),
                        host,
                        tls,
                        ca_file,
                        tls_pins,
                        username,
                        auth,
                        folders,
                        idle: m.idle.unwrap_or(true),
                        idle_refresh,
                        poll_interval,
                        connect_timeout: Duration::from_secs(m.connect_timeout_secs.unwrap_or(30)),
                        op_timeout: Duration::from_secs(m.op_timeout_secs.unwrap_or(120).max(1)),
                        after_processing,
                    })
                }
            };
            mailboxes.push(mailbox);
        }

        let mut vendors = Vec::new();
        for (i, v) in raw.vendor.into_iter().enumerate() {
            vendors.push(crate::reconcile::config::validate(&src, i, v, &base)?);
        }
        let report = raw
            .report
            .map(|r| crate::report::config::validate(&src, r, &base))
            .transpose()?;
        let http = raw
            .http
            .map(|h| crate::http::config::validate(&src, h, &base))
            .transpose()?
            .flatten();

        Ok(Config {
            vendors,
            report,
            http,
            file: file.to_path_buf(),
            database,
            parsers_dir,
            ingest,
            mailboxes,
            log_format: raw.log.format.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("driftwatch.toml");
        std::fs::write(&f, text).unwrap();
        Config::load(&f).map_err(|mut e| {
            e.file = PathBuf::from("driftwatch.toml");
            e
        })
    }

    #[test]
    fn unknown_key_names_file_key_and_line() {
        let e = load_str("data_dir = \"x\"\n\n[[mailbox]]\nname = \"a\"\nkind = \"maildir\"\npath = \"m\"\npoll_intervall_secs = 5\n")
            .unwrap_err();
        assert_eq!(e.line, Some(7), "{e}");
        assert_eq!(
            e.key.as_deref(),
            Some("mailbox[0].poll_intervall_secs"),
            "{e}"
        );
        assert!(e.message.contains("unknown field"), "{e}");
        assert!(
            e.to_string()
                .starts_with("driftwatch.toml:7: key `mailbox[0].poll_intervall_secs`"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_and_bad_enum_are_located() {
        let e = load_str("[ingest]\nmax_message_bytes = \"big\"\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(2), Some("ingest.max_message_bytes")),
            "{e}"
        );
        let e = load_str("[[mailbox]]\nname = \"a\"\nkind = \"pop3\"\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(3), Some("mailbox[0].kind")),
            "{e}"
        );
    }

    #[test]
    fn plaintext_imap_must_be_confirmed() {
        let base = "[[mailbox]]\nname = \"a\"\nkind = \"imap\"\nhost = \"h\"\nusername = \"u\"\npassword_env = \"P\"\ntls = \"none\"\n";
        let e = load_str(base).unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(7), Some("mailbox[0].tls")),
            "{e}"
        );
        let ok = load_str(&format!("{base}allow_plaintext = true\n")).unwrap();
        let Mailbox::Imap(m) = &ok.mailboxes[0] else {
            panic!()
        };
        assert_eq!((m.tls, m.port), (TlsMode::None, 143));
    }

    #[test]
    fn credentials_are_required_and_exclusive() {
        let base = "[[mailbox]]\nname = \"a\"\nkind = \"imap\"\nhost = \"h\"\nusername = \"u\"\n";
        let e = load_str(base).unwrap_err();
        assert!(e.message.contains("no credentials"), "{e}");
        let e = load_str(&format!(
            "{base}password_env = \"P\"\npassword_file = \"f\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("mailbox[0].password_file"), "{e}");
        assert_eq!(e.line, Some(7), "{e}");
    }

    #[test]
    fn tls_pins_are_checked_at_load_with_their_line() {
        let base = "[[mailbox]]\nname = \"a\"\nkind = \"imap\"\nhost = \"h\"\nusername = \"u\"\npassword_env = \"P\"\n";
        let hex = "ab".repeat(32);
        let ok = load_str(&format!("{base}tls_pin_sha256 = [\"{hex}\", \"{hex}\"]\n")).unwrap();
        let Mailbox::Imap(m) = &ok.mailboxes[0] else {
            panic!()
        };
        assert_eq!(m.tls_pins, vec![[0xab; 32]; 2]);
        let e = load_str(&format!("{base}tls_pin_sha256 = \"abc\"\n")).unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(7), Some("mailbox[0].tls_pin_sha256")),
            "{e}"
        );
        let e = load_str(&format!(
            "{base}tls = \"none\"\nallow_plaintext = true\ntls_pin_sha256 = \"{hex}\"\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("needs tls"), "{e}");
    }

    #[tokio::test]
    async fn secrets_never_show_in_debug() {
        unsafe_free_env_check().await;
        let s = Secret::File(PathBuf::from("/run/secrets/pw"));
        assert!(!format!("{s:?}").contains("hunter2"));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "hunter2\n").unwrap();
        let s = Secret::File(f);
        assert_eq!(s.resolve().await.unwrap(), "hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        let cmd = Secret::Command("echo tok123".into());
        assert_eq!(cmd.resolve().await.unwrap(), "tok123");
        assert!(!format!("{cmd:?}").contains("tok123"));
    }

    #[tokio::test]
    async fn a_hung_token_command_is_killed_after_its_timeout() {
        let cmd = Secret::Command("sleep 30; echo late".into());
        let started = std::time::Instant::now();
        let e = cmd
            .resolve_within(Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(e, SecretError::CommandTimeout(_)), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_token_command_does_not_block_the_runtime() {
        // On a single-threaded runtime a blocking command would stall the ticker.
        let ticks = tokio::spawn(async {
            let mut n = 0;
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                n += 1;
            }
            n
        });
        let started = std::time::Instant::now();
        let v = Secret::Command("sleep 0.6; echo tok".into())
            .resolve()
            .await
            .unwrap();
        assert_eq!(v, "tok");
        assert!(
            ticks.is_finished(),
            "the runtime stalled while the command ran"
        );
        assert!(started.elapsed() >= Duration::from_millis(500));
    }

    async fn unsafe_free_env_check() {
        // Env vars are process-global; tests read an existing one instead of setting one.
        let s = Secret::Env("PATH".into());
        assert!(s.resolve().await.is_ok());
        assert!(matches!(
            Secret::Env("DRIFTWATCH_SURELY_UNSET_VAR".into())
                .resolve()
                .await,
            Err(SecretError::EnvMissing(_))
        ));
    }
}
