//! Typed configuration from one TOML file.
//!
//! Errors name the file, the line and the key, because the person reading them
//! is editing that file. Unknown keys are errors (a typo must not silently fall
//! back to a default). Secrets are references (`password_env`,
//! `password_file`), resolved when used and never printed: see [`Secret`].
//! Relative paths are relative to the config file, so a config works from any
//! working directory. Environment variables win over the file for the few
//! settings operators override per deployment (`DRIFTWATCH_DATA_DIR`).

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

pub use crate::secret::{SECRET_COMMAND_TIMEOUT, Secret, SecretError};
use crate::store::{Backend, Location, Store};
pub use crate::tls_mode::TlsMode;

/// Where the store is (`database`) and, for PostgreSQL, where its password
/// comes from (`database_password_env` / `database_password_file`).
#[derive(Debug, Clone)]
pub struct Database {
    pub location: Location,
    pub password: Option<Secret>,
}

impl Database {
    /// Resolves the password (at use time, like every secret) and opens the
    /// store, applying pending migrations.
    pub async fn open(&self) -> anyhow::Result<Store> {
        use anyhow::Context;
        let mut location = self.location.clone();
        if let (Location::Postgres { password, .. }, Some(secret)) = (&mut location, &self.password)
        {
            *password =
                Some(secret.resolve().await.context(
                    "database password (database_password_env / database_password_file)",
                )?);
        }
        Store::connect(&location)
            .await
            .with_context(|| format!("failed to open database {}", self.describe()))
    }

    /// The path or URL (never the password), for messages.
    pub fn describe(&self) -> String {
        self.location.describe()
    }
}

// ---------------------------------------------------------------------------
// The file format.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    data_dir: Option<PathBuf>,
    database: Option<String>,
    database_password_env: Option<String>,
    database_password_file: Option<PathBuf>,
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
    /// Statuses this deployment adds to the built-in seven (read first, by
    /// `Statuses`, so every status map below can name them).
    #[serde(default)]
    #[serde(rename = "status")]
    _status: Vec<RawStatus>,
}

/// `[[status]]`: one canonical status added to the built-in seven.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatus {
    name: String,
    after: Option<String>,
    #[serde(default)]
    terminal: bool,
}

/// The `[[status]]` tables alone, read before the rest of the file.
#[derive(Debug, Deserialize)]
struct Statuses {
    #[serde(default)]
    status: Vec<RawStatus>,
}

/// Declares the file's `[[status]]` tables process-wide (see
/// `model::declare_statuses`): a status map anywhere in the config, a rule
/// file or the store can then name them.
fn declare_statuses(src: &TomlSource) -> Result<(), ConfigError> {
    let Statuses { status } = src.parse()?;
    let decls: Vec<_> = status
        .into_iter()
        .map(|s| crate::model::StatusDecl {
            name: s.name,
            after: s.after,
            terminal: s.terminal,
        })
        .collect();
    crate::model::declare_statuses(&decls).map_err(|e| {
        let i = match &e {
            crate::model::StatusError::BadName(n) | crate::model::StatusError::Redeclared(n) => {
                decls.iter().position(|d| &d.name == n)
            }
            crate::model::StatusError::UnknownAfter { name, .. }
            | crate::model::StatusError::SideAnchor { name, .. }
            | crate::model::StatusError::AnchorTaken { name, .. } => {
                decls.iter().position(|d| &d.name == name)
            }
            crate::model::StatusError::TooMany => None,
        };
        src.error(&format!("status[{}]", i.unwrap_or(0)), e.to_string())
    })
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
    /// Where driftwatch keeps its files (`data_dir`): the SQLite database by
    /// default, downloaded exports while they are read.
    pub data_dir: PathBuf,
    pub database: Database,
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
    /// The `[report]` settings, or the defaults `driftwatch report` uses
    /// without one; either way with the vendors' key-frame overdue limits.
    pub fn report_settings(&self) -> crate::report::config::ReportSettings {
        self.report
            .clone()
            .unwrap_or_else(|| crate::report::config::ReportSettings {
                keyframe_overdue: crate::reconcile::config::keyframe_overdue(&self.vendors),
                ..Default::default()
            })
    }

    /// The settings used when there is no config file (`parsers test` in a
    /// checkout): `./parsers`, a database under `./data`, no mailboxes.
    pub fn defaults_in(dir: &Path) -> Config {
        Config {
            file: dir.join("driftwatch.toml"),
            data_dir: dir.join("data"),
            database: Database {
                location: Location::Sqlite(dir.join("data/driftwatch.db")),
                password: None,
            },
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
        declare_statuses(&src)?;
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
        let location = match &raw.database {
            Some(text) => Location::parse(text, &data_dir).map_err(|e| src.error("database", e))?,
            None => Location::Sqlite(data_dir.join("driftwatch.db")),
        };
        let password = match (&raw.database_password_env, &raw.database_password_file) {
            (Some(_), Some(_)) => {
                return Err(src.error(
                    "database_password_file",
                    "conflicts with `database_password_env`: give one password source",
                ));
            }
            (Some(v), None) => Some(Secret::Env(v.clone())),
            (None, Some(p)) => Some(Secret::File(rel(p))),
            (None, None) => None,
        };
        if password.is_some() && location.backend() == Backend::Sqlite {
            let key = if raw.database_password_env.is_some() {
                "database_password_env"
            } else {
                "database_password_file"
            };
            return Err(src.error(key, "only applies to a postgres:// database"));
        }
        let database = Database { location, password };
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
        crate::reconcile::config::trust_authserv_ids(&mut vendors, &ingest.authserv_ids);
        let mut report = raw
            .report
            .map(|r| crate::report::config::validate(&src, r, &base))
            .transpose()?;
        if let Some(r) = &mut report {
            r.keyframe_overdue = crate::reconcile::config::keyframe_overdue(&vendors);
        }
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
            data_dir,
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
}
