//! A real, private Dovecot IMAP server on loopback for integration tests. No mocks.
//!
//! Each [`Dovecot`] owns a short temp dir under /tmp or [`TMPDIR_ENV`] (config, certificates, passwd file,
//! Maildirs, log, unix sockets), its own ports and its own master process. The master runs
//! in the foreground (`dovecot -F`) as our child, so we hold a handle that can be signalled
//! and reaped and whose PID cannot be reused behind our back.
//!
//! Facts behind the choices are in /work/shared/notes/mail-servers.md; "pitfall N" below
//! refers to the numbered pitfalls there.
//!
//! ```ignore
//! mod support;
//! use support::dovecot::Dovecot;
//!
//! #[tokio::test]
//! async fn example() {
//!     let dc = Dovecot::start();
//!     let uids = dc.append("INBOX", &[b"Subject: hi\r\n\r\nbody\r\n".to_vec()]).await;
//!     let mut session = dc.connect_tls().await; // logged in as alice@localhost
//!     session.select("INBOX").await.expect("select");
//! }
//! ```

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpStream as StdTcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_imap::imap_proto::rfc4315::UidSetMember;
use async_imap::imap_proto::{Response, ResponseCode, Status};
use async_imap::types::Flag;
use futures_util::TryStreamExt;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The TLS stream every harness IMAP session runs over.
pub type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;
/// A logged-in IMAP session over [`TlsStream`].
pub type ImapSession = async_imap::Session<TlsStream>;

/// The one mail account of every instance.
pub const USER: &str = "alice@localhost";
pub const PASSWORD: &str = "alicepw";

/// Messages per MULTIAPPEND command in [`Dovecot::append`]. Bounds the size of one
/// transaction; the count per command hardly matters for speed.
const APPEND_BATCH: usize = 500;
/// How often `start` picks new ports when another process took one of ours.
const START_ATTEMPTS: usize = 5;
const READY_TIMEOUT: Duration = Duration::from_secs(15);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Parent of the instance dirs; default `/tmp` (a short path). Maildir makes one file per
/// message, so on a slow disk `DRIFTWATCH_TEST_TMPDIR=/dev/shm` (tmpfs) makes bulk appends
/// several times faster. Mind Docker's default 64 MB /dev/shm.
pub const TMPDIR_ENV: &str = "DRIFTWATCH_TEST_TMPDIR";

/// A running (or stopped) private Dovecot. Dropping it stops the daemon.
pub struct Dovecot {
    imap_port: u16,
    imaps_port: u16,
    lmtp_port: u16,
    /// `dovecot -F` master process; `None` while stopped.
    child: Option<Child>,
    /// `sh` that SIGTERMs the master when its stdin pipe (held by this process) closes,
    /// i.e. when the test process dies without running `Drop` (e.g. SIGKILL by a timeout).
    watchdog: Option<Child>,
    /// Declared last so it is removed after everything else is torn down.
    dir: tempfile::TempDir,
}

impl Dovecot {
    /// Starts a fresh instance and blocks until its IMAP greeting is readable.
    ///
    /// Panics with Dovecot's stderr and log when it cannot start.
    pub fn start() -> Dovecot {
        let parent =
            std::env::var_os(TMPDIR_ENV).map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
        let dir = tempfile::Builder::new()
            .prefix("dw")
            .tempdir_in(&parent)
            .unwrap_or_else(|e| panic!("create temp dir under {}: {e}", parent.display()));
        // base_dir holds unix sockets, whose paths are limited to ~108 bytes.
        assert!(
            dir.path().as_os_str().len() <= 60,
            "temp dir {} is too long for Dovecot's unix sockets; set {TMPDIR_ENV} to a short path",
            dir.path().display()
        );
        // tempfile makes 0700 dirs; `nobody` must reach the Maildirs (pitfall 2).
        set_mode(dir.path(), 0o755);
        let mut dc = Dovecot {
            imap_port: 0,
            imaps_port: 0,
            lmtp_port: 0,
            child: None,
            watchdog: None,
            dir,
        };
        dc.write_files();

        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            [dc.imap_port, dc.imaps_port, dc.lmtp_port] = super::free_ports::<3>();
            dc.write_config();
            match dc.launch() {
                Ok(()) => return dc,
                // Someone took a port between free_ports() and Dovecot's bind: pick new ones.
                Err(Launch::AddrInUse(text)) => last_error = text,
                Err(Launch::Failed(text)) => panic!("dovecot failed to start:\n{text}"),
            }
        }
        panic!("dovecot could not bind free ports after {START_ATTEMPTS} attempts:\n{last_error}");
    }

    /// Starts the instance again: same ports, same config, same mail store. Stops it first
    /// if it is still running (or reaps it if it died on its own).
    pub fn restart(&mut self) {
        self.stop();
        // The ports are fixed now, so wait out a transient conflict instead of re-picking.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.launch() {
                Ok(()) => return,
                Err(Launch::AddrInUse(text)) if Instant::now() >= deadline => {
                    panic!("dovecot restart: ports still in use:\n{text}")
                }
                Err(Launch::AddrInUse(_)) => std::thread::sleep(Duration::from_millis(200)),
                Err(Launch::Failed(text)) => panic!("dovecot failed to restart:\n{text}"),
            }
        }
    }

    /// Stops the daemon: SIGTERM to the master, reap it, then wait until the IMAP port
    /// refuses connections (its login processes may outlive the master by a moment).
    /// Does nothing when already stopped.
    pub fn stop(&mut self) {
        // Watchdog first, so it cannot signal a PID after we reaped the master.
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        // With -F the master is our child: child.id() is the PID in run/master.pid, and as we
        // have not reaped it yet it cannot have been reused. No `kill -0` liveness checks:
        // exited processes linger as zombies (pitfall 7).
        signal(child.id(), "TERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = child.kill(); // SIGKILL: it ignored SIGTERM for too long
                    let _ = child.wait();
                    break;
                }
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for port in [self.imap_port, self.imaps_port, self.lmtp_port] {
            while port_accepts(port) {
                if Instant::now() >= deadline {
                    // Never panic here: stop() runs from Drop, possibly while unwinding.
                    eprintln!("dovecot harness: port {port} still accepts after stop");
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// True while the master process is alive (not merely a zombie).
    pub fn is_running(&self) -> bool {
        self.child.as_ref().is_some_and(|c| process_alive(c.id()))
    }

    /// STARTTLS-capable plain IMAP port on 127.0.0.1.
    pub fn imap_port(&self) -> u16 {
        self.imap_port
    }

    /// Implicit-TLS IMAP port on 127.0.0.1.
    pub fn imaps_port(&self) -> u16 {
        self.imaps_port
    }

    /// LMTP port on 127.0.0.1 (for an MTA delivering into this store).
    pub fn lmtp_port(&self) -> u16 {
        self.lmtp_port
    }

    /// Unix socket for SASL auth against this Dovecot's users (Postfix `smtpd_sasl_path`).
    pub fn auth_socket(&self) -> PathBuf {
        self.dir().join("run/auth-postfix")
    }

    /// PEM of the CA that signed the server certificate: the only root clients should trust.
    pub fn ca_file(&self) -> PathBuf {
        self.dir().join("ca.pem")
    }

    /// Server certificate (leaf only) and its key, e.g. for another server in the same test.
    pub fn cert_file(&self) -> PathBuf {
        self.dir().join("cert.pem")
    }
    pub fn key_file(&self) -> PathBuf {
        self.dir().join("key.pem")
    }

    pub fn user(&self) -> &str {
        USER
    }

    pub fn password(&self) -> &str {
        PASSWORD
    }

    /// The instance's directory (config `dovecot.conf`, log `dovecot.log`, `mail/`, `run/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_file(&self) -> PathBuf {
        self.dir().join("dovecot.conf")
    }

    /// Dovecot's log so far (handy in assertion messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir().join("dovecot.log")).unwrap_or_default()
    }

    /// A client TLS connector that trusts only [`Self::ca_file`].
    pub fn tls_connector(&self) -> TlsConnector {
        tls_connector(&self.ca_file())
    }

    /// Adds a mail account (Dovecot re-reads the passwd file when it changes).
    pub fn add_user(&self, user: &str, password: &str) {
        use std::io::Write;
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(self.dir().join("passwd"))
            .expect("open passwd");
        writeln!(f, "{user}:{{PLAIN}}{password}").expect("append to passwd");
    }

    /// Replaces the server certificate with a self-signed one marked
    /// `CA:TRUE` (as `openssl req -x509` and many appliances make them) and
    /// restarts. [`Self::ca_file`] then holds that same certificate. Returns
    /// its DER, for pinning.
    pub fn use_self_signed_ca_certificate(&mut self) -> Vec<u8> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let key = KeyPair::generate().expect("generate key");
        let cert = params.self_signed(&key).expect("self-sign");
        fs::write(self.cert_file(), cert.pem()).expect("write cert.pem");
        fs::write(self.key_file(), key.serialize_pem()).expect("write key.pem");
        fs::write(self.ca_file(), cert.pem()).expect("write ca.pem");
        self.restart();
        cert.der().to_vec()
    }

    /// Logged-in IMAP session over implicit TLS (imaps port), trusting only the test CA.
    pub async fn connect_tls(&self) -> ImapSession {
        let work = async {
            let tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, self.imaps_port))
                .await
                .expect("connect to dovecot imaps port");
            let tls = self
                .tls_connector()
                .connect(server_name(), tcp)
                .await
                .expect("TLS handshake with dovecot");
            let mut client = async_imap::Client::new(tls);
            // async-imap does not read the greeting by itself.
            client
                .read_response()
                .await
                .expect("read IMAP greeting")
                .expect("connection closed before the IMAP greeting");
            client
                .login(USER, PASSWORD)
                .await
                .map_err(|(e, _)| e)
                .expect("IMAP LOGIN as alice@localhost")
        };
        tokio::time::timeout(IO_TIMEOUT, work)
            .await
            .expect("timed out connecting to dovecot over TLS")
    }

    /// Appends raw RFC 5322 messages to `folder` (created if missing) and returns the UIDs
    /// Dovecot assigned, in message order.
    ///
    /// Uses MULTIAPPEND (RFC 3502) with non-synchronizing literals (LITERAL+), so a whole
    /// batch is one command with no round trip per message, and takes the UIDs from the
    /// APPENDUID response code (UIDPLUS). async-imap's `append` waits for a continuation
    /// per message and discards APPENDUID, hence the raw protocol here.
    pub async fn append(&self, folder: &str, messages: &[Vec<u8>]) -> Vec<u32> {
        let items: Vec<AppendItem<'_>> = messages
            .iter()
            .map(|m| AppendItem {
                body: m,
                flags: Vec::new(),
                date: None,
            })
            .collect();
        let mut session = self.connect_tls().await;
        ensure_folder(&mut session, folder).await;
        let uids = multiappend(&mut session, folder, &items).await;
        let _ = session.logout().await;
        uids
    }

    /// UIDVALIDITY of `folder` (via STATUS).
    pub async fn uid_validity(&self, folder: &str) -> u32 {
        let mut session = self.connect_tls().await;
        let mailbox = session
            .status(folder, "(UIDVALIDITY)")
            .await
            .unwrap_or_else(|e| panic!("STATUS {folder} (UIDVALIDITY): {e}"));
        let _ = session.logout().await;
        mailbox
            .uid_validity
            .expect("STATUS response without UIDVALIDITY")
    }

    /// Sets UIDVALIDITY of `folder` (INBOX included) keeping its messages, with
    /// `doveadm mailbox update --uid-validity`. Clients see the new value on their next SELECT.
    pub fn set_uid_validity(&self, folder: &str, value: u32) {
        self.doveadm(&[
            "mailbox",
            "update",
            "-u",
            USER,
            "--uid-validity",
            &value.to_string(),
            folder,
        ]);
    }

    /// Runs `doveadm -c <this config> ARGS...`, panicking with its output on failure.
    /// doveadm exits by itself, so capturing its output is fine (unlike the daemon, pitfall 4).
    pub fn doveadm(&self, args: &[&str]) -> String {
        let out = Command::new("doveadm")
            .arg("-c")
            .arg(self.config_file())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run doveadm");
        assert!(
            out.status.success(),
            "doveadm {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `(uid, flags)` of every message in `folder`, by ascending UID. Flags are IMAP
    /// spellings (`"\\Seen"`, keywords as-is); the session flag `\Recent` is left out.
    pub async fn flags(&self, folder: &str) -> Vec<(u32, Vec<String>)> {
        let mut session = self.connect_tls().await;
        let mailbox = session
            .examine(folder)
            .await
            .unwrap_or_else(|e| panic!("EXAMINE {folder}: {e}"));
        let mut result = Vec::new();
        if mailbox.exists > 0 {
            let fetches: Vec<_> = session
                .uid_fetch("1:*", "(UID FLAGS)")
                .await
                .expect("UID FETCH FLAGS")
                .try_collect()
                .await
                .expect("read FETCH responses");
            for f in &fetches {
                let uid = f.uid.expect("FETCH response without UID");
                result.push((uid, flag_strings(f.flags())));
            }
        }
        let _ = session.logout().await;
        result.sort_by_key(|(uid, _)| *uid);
        result
    }

    /// Number of messages in `folder`; 0 if it does not exist.
    pub async fn count(&self, folder: &str) -> u32 {
        let mut session = self.connect_tls().await;
        let n = if folder_exists(&mut session, folder).await {
            session
                .status(folder, "(MESSAGES)")
                .await
                .unwrap_or_else(|e| panic!("STATUS {folder} (MESSAGES): {e}"))
                .exists
        } else {
            0
        };
        let _ = session.logout().await;
        n
    }

    /// Deletes and recreates `folder` with the same messages (flags and internal dates
    /// kept): the other way a folder's UIDVALIDITY changes. Not for INBOX, which IMAP
    /// cannot delete; use [`Self::set_uid_validity`] there.
    pub async fn recreate_folder(&self, folder: &str) {
        assert!(
            !folder.eq_ignore_ascii_case("INBOX"),
            "IMAP cannot DELETE INBOX; use set_uid_validity for INBOX"
        );
        let mut session = self.connect_tls().await;
        let mailbox = session
            .examine(folder)
            .await
            .unwrap_or_else(|e| panic!("EXAMINE {folder}: {e}"));
        let mut fetches: Vec<_> = if mailbox.exists > 0 {
            session
                .uid_fetch("1:*", "(UID FLAGS INTERNALDATE BODY.PEEK[])")
                .await
                .expect("UID FETCH messages")
                .try_collect()
                .await
                .expect("read FETCH responses")
        } else {
            Vec::new()
        };
        fetches.sort_by_key(|f| f.uid);
        session.close().await.expect("CLOSE");
        session
            .delete(folder)
            .await
            .unwrap_or_else(|e| panic!("DELETE {folder}: {e}"));
        session
            .create(folder)
            .await
            .unwrap_or_else(|e| panic!("CREATE {folder}: {e}"));
        let items: Vec<AppendItem<'_>> = fetches
            .iter()
            .map(|f| AppendItem {
                body: f.body().expect("FETCH response without BODY[]"),
                flags: flag_strings(f.flags()),
                date: f
                    .internal_date()
                    .map(|d| d.format("%d-%b-%Y %H:%M:%S %z").to_string()),
            })
            .collect();
        multiappend(&mut session, folder, &items).await;
        let _ = session.logout().await;
    }

    // ---- internals ----

    /// Writes everything that does not depend on the ports: certificates, users, mail root.
    fn write_files(&self) {
        let (ca_pem, cert_pem, key_pem) = make_certs();
        fs::write(self.ca_file(), ca_pem).expect("write ca.pem");
        fs::write(self.cert_file(), cert_pem).expect("write cert.pem");
        fs::write(self.key_file(), key_pem).expect("write key.pem");
        fs::write(
            self.dir().join("passwd"),
            format!("{USER}:{{PLAIN}}{PASSWORD}\n"),
        )
        .expect("write passwd");
        let mail = self.dir().join("mail");
        fs::create_dir(&mail).expect("create mail dir");
        let ids = Identities::get();
        if ids.root {
            // Mail is accessed as nobody:nogroup, never as root (pitfall 1).
            let status = Command::new("chown")
                .arg(format!("{}:{}", ids.mail_user, ids.mail_group))
                .arg(&mail)
                .status()
                .expect("run chown");
            assert!(status.success(), "chown {} failed", mail.display());
        }
    }

    fn write_config(&self) {
        let d = self.dir().display().to_string();
        let ids = Identities::get();
        let instance = self
            .dir()
            .file_name()
            .expect("temp dir has a name")
            .to_string_lossy()
            .into_owned();
        // One setting per line and blocks spread over lines (pitfall 3). Nothing is included
        // from /etc/dovecot, so the system configuration cannot leak in.
        let mut conf = format!(
            r#"# Generated by tests/support/dovecot.rs
instance_name = dovecot-{instance}
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
listen = 127.0.0.1
protocols = imap lmtp
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = 1
first_valid_gid = 1
ssl = yes
ssl_cert = <{d}/cert.pem
ssl_key = <{d}/key.pem
auth_mechanisms = plain login xoauth2
disable_plaintext_auth = no
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={mail_group} home={d}/mail/%u
}}
mail_location = maildir:~/Maildir
# Test data: durability does not matter, speed does.
mail_fsync = never
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    port = {lmtp}
  }}
}}
service auth {{
  unix_listener auth-postfix {{
    mode = 0666
  }}
}}
"#,
            internal_user = ids.internal_user,
            internal_group = ids.internal_group,
            login_user = ids.login_user,
            mail_user = ids.mail_user,
            mail_group = ids.mail_group,
            imap = self.imap_port,
            imaps = self.imaps_port,
            lmtp = self.lmtp_port,
        );
        if !ids.root {
            // Without root Dovecot cannot chroot or switch users; everything runs as us.
            conf.push_str(
                "service imap-login {\n  chroot =\n}\nservice anvil {\n  chroot =\n}\n\
                 service auth-worker {\n  user = $default_internal_user\n}\n",
            );
        }
        fs::write(self.config_file(), conf).expect("write dovecot.conf");
    }

    /// Spawns `dovecot -F` and waits for the greeting. On failure the child is reaped.
    fn launch(&mut self) -> Result<(), Launch> {
        let stderr_path = self.dir().join("dovecot.stderr");
        // Stdio goes to a file, never a pipe we read to EOF (pitfall 4); -F keeps the master
        // as our child.
        let stderr = fs::File::create(&stderr_path).expect("create dovecot.stderr");
        let child = Command::new("dovecot")
            .arg("-F")
            .arg("-c")
            .arg(self.config_file())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn dovecot (is it installed? run scripts/install-test-deps.sh)");
        let pid = child.id();
        self.child = Some(child); // from here on, Drop stops it even if we panic
        self.watchdog = spawn_watchdog(pid, self.dir.path());

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                self.stop(); // reaps the watchdog
                let text = format!(
                    "dovecot exited with {status}\n--- stderr ---\n{}\n--- dovecot.log ---\n{}",
                    fs::read_to_string(&stderr_path).unwrap_or_default(),
                    self.log()
                );
                return Err(if text.contains("Address already in use") {
                    Launch::AddrInUse(text)
                } else {
                    Launch::Failed(text)
                });
            }
            if greeting_readable(self.imap_port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let text = format!(
                    "no IMAP greeting on port {} within {READY_TIMEOUT:?}\n--- stderr ---\n{}\n--- dovecot.log ---\n{}",
                    self.imap_port,
                    fs::read_to_string(&stderr_path).unwrap_or_default(),
                    self.log()
                );
                self.stop();
                return Err(Launch::Failed(text));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

enum Launch {
    AddrInUse(String),
    Failed(String),
}

/// Which users the daemon and the mail store run as.
struct Identities {
    root: bool,
    internal_user: String,
    internal_group: String,
    login_user: String,
    mail_user: String,
    mail_group: String,
}

impl Identities {
    fn get() -> Identities {
        // The owner of /proc/self is our effective uid (no libc needed).
        let root = fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false);
        if root {
            // Login processes and mail access must not run as root (pitfall 1).
            Identities {
                root,
                internal_user: "root".into(),
                internal_group: "root".into(),
                login_user: "dovenull".into(),
                mail_user: "nobody".into(),
                mail_group: "nogroup".into(),
            }
        } else {
            let user = id_output("-un");
            let group = id_output("-gn");
            Identities {
                root,
                internal_user: user.clone(),
                internal_group: group.clone(),
                login_user: user.clone(),
                mail_user: user,
                mail_group: group,
            }
        }
    }
}

fn id_output(flag: &str) -> String {
    let out = Command::new("id").arg(flag).output().expect("run id");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// CA plus a leaf it signed. The leaf says CA:FALSE explicitly and names both 127.0.0.1
/// and localhost: webpki rejects CA certificates as server certificates (pitfall 6).
/// Returns (CA PEM, leaf PEM, leaf key PEM).
pub fn make_certs() -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "driftwatch test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().expect("generate CA key");
    let ca = ca_params.self_signed(&ca_key).expect("self-sign CA");

    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("leaf params");
    leaf_params.is_ca = IsCa::ExplicitNoCa;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().expect("generate leaf key");
    let leaf = leaf_params
        .signed_by(&leaf_key, &ca, &ca_key)
        .expect("sign leaf with CA");
    (ca.pem(), leaf.pem(), leaf_key.serialize_pem())
}

/// rustls client config (ring provider) trusting only the PEM certificates in `ca_file`.
pub fn tls_connector(ca_file: &Path) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).expect("open CA file") {
        roots
            .add(cert.expect("parse CA PEM"))
            .expect("add CA to root store");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// The name the server certificate is checked against.
pub fn server_name() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("valid DNS name")
}

/// Sends SIG`name` to `pid` with kill(1): the crate forbids `unsafe`, so no libc::kill.
fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A tiny `sh` that blocks reading a pipe whose only write end lives in this process
/// (Rust creates pipes close-on-exec, so no other child inherits it). When this process
/// dies without running Drop, the pipe hits EOF and the shell SIGTERMs the master, then
/// removes the temp dir once the master has had time to exit. `stop` SIGKILLs it first.
fn spawn_watchdog(pid: u32, dir: &Path) -> Option<Child> {
    Command::new("sh")
        .arg("-c")
        .arg(r#"read -r _; kill -TERM "$1" 2>/dev/null; sleep 10; rm -rf "$2""#)
        .arg("dovecot-watchdog")
        .arg(pid.to_string())
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

/// Alive per /proc/PID/stat (state other than Z/X). `kill -0` would also count zombies.
fn process_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // Format: "pid (comm) S ..."; comm may contain spaces or parens, so split at the last ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
        .is_some_and(|state| state != 'Z' && state != 'X')
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn port_accepts(port: u16) -> bool {
    StdTcpStream::connect_timeout(&addr(port), Duration::from_millis(200)).is_ok()
}

/// True once a connection to `port` yields an `* OK` IMAP greeting.
fn greeting_readable(port: u16) -> bool {
    let Ok(stream) = StdTcpStream::connect_timeout(&addr(port), Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    // A timeout or error just means "not yet"; the caller polls until its deadline.
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("* OK")
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// IMAP quoted string.
fn quote(s: &str) -> String {
    assert!(!s.contains(['\r', '\n']), "CR/LF in IMAP string {s:?}");
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn flag_strings<'a>(flags: impl Iterator<Item = Flag<'a>>) -> Vec<String> {
    flags
        .filter_map(|f| match f {
            Flag::Seen => Some("\\Seen".to_string()),
            Flag::Answered => Some("\\Answered".to_string()),
            Flag::Flagged => Some("\\Flagged".to_string()),
            Flag::Deleted => Some("\\Deleted".to_string()),
            Flag::Draft => Some("\\Draft".to_string()),
            Flag::Recent => None, // session flag; cannot be set by APPEND/STORE either
            Flag::MayCreate => Some("\\*".to_string()),
            Flag::Custom(s) => Some(s.into_owned()),
        })
        .collect()
}

async fn folder_exists(session: &mut ImapSession, folder: &str) -> bool {
    let names: Vec<_> = session
        .list(Some(""), Some(&quote(folder)))
        .await
        .expect("LIST")
        .try_collect()
        .await
        .expect("read LIST responses");
    names.iter().any(|n| n.name() == folder)
}

async fn ensure_folder(session: &mut ImapSession, folder: &str) {
    if folder.eq_ignore_ascii_case("INBOX") || folder_exists(session, folder).await {
        return;
    }
    session
        .create(folder)
        .await
        .unwrap_or_else(|e| panic!("CREATE {folder}: {e}"));
}

struct AppendItem<'a> {
    body: &'a [u8],
    /// IMAP flag spellings, `\Recent` excluded.
    flags: Vec<String>,
    /// IMAP date-time, e.g. `05-Mar-2024 10:00:00 +0000`.
    date: Option<String>,
}

impl AppendItem<'_> {
    /// `[(flags)] ["date"] {len+}`: the part of MULTIAPPEND before each literal.
    fn prefix(&self) -> String {
        let mut p = String::new();
        if !self.flags.is_empty() {
            p.push_str(&format!("({}) ", self.flags.join(" ")));
        }
        if let Some(date) = &self.date {
            p.push_str(&format!("\"{date}\" "));
        }
        p.push_str(&format!("{{{}+}}", self.body.len()));
        p
    }
}

/// MULTIAPPEND (RFC 3502) with LITERAL+ (RFC 7888) in batches; returns the UIDs from
/// APPENDUID (RFC 4315) in message order. `folder` must exist.
async fn multiappend(
    session: &mut ImapSession,
    folder: &str,
    items: &[AppendItem<'_>],
) -> Vec<u32> {
    let mut uids = Vec::with_capacity(items.len());
    for batch in items.chunks(APPEND_BATCH) {
        let (first, rest) = batch.split_first().expect("chunks are non-empty");
        // run_command writes "TAG APPEND folder <prefix>\r\n"; the literals follow raw.
        let tag = session
            .run_command(format!("APPEND {} {}", quote(folder), first.prefix()))
            .await
            .expect("send APPEND");
        let mut buf = Vec::with_capacity(batch.iter().map(|i| i.body.len() + 64).sum());
        buf.extend_from_slice(first.body);
        for item in rest {
            buf.push(b' ');
            buf.extend_from_slice(item.prefix().as_bytes());
            buf.extend_from_slice(b"\r\n");
            buf.extend_from_slice(item.body);
        }
        buf.extend_from_slice(b"\r\n");
        let stream: &mut TlsStream = session.as_mut();
        stream.write_all(&buf).await.expect("write APPEND literals");
        stream.flush().await.expect("flush APPEND");

        loop {
            let response = tokio::time::timeout(IO_TIMEOUT, session.read_response())
                .await
                .expect("timed out waiting for APPEND to complete")
                .expect("read APPEND response")
                .expect("connection closed during APPEND");
            let Response::Done {
                tag: done_tag,
                status,
                outcome,
            } = response.parsed()
            else {
                continue; // untagged data, none expected with no mailbox selected
            };
            if *done_tag != tag {
                continue;
            }
            assert!(
                matches!(status, Status::Ok),
                "APPEND to {folder} failed: {status:?} {outcome:?}"
            );
            let Some(ResponseCode::AppendUid(_, set)) = &outcome.code else {
                panic!("APPEND OK without APPENDUID: {outcome:?}");
            };
            for member in set {
                match member {
                    UidSetMember::Uid(uid) => uids.push(*uid),
                    UidSetMember::UidRange(range) => uids.extend(range.clone()),
                }
            }
            break;
        }
    }
    assert_eq!(
        uids.len(),
        items.len(),
        "APPENDUID count differs from messages appended"
    );
    uids
}
