//! A real, private Postfix SMTP server on loopback that delivers into a harness
//! [`Dovecot`] over LMTP, so a test sends mail with a real client and reads it
//! back over IMAP. No mocks.
//!
//! Each [`Postfix`] owns a temp dir (config, queue, data, log) and two ports:
//! a submission port with STARTTLS and an implicit-TLS port, both offering
//! AUTH PLAIN against the Dovecot's users (only after TLS). Nothing leaves the
//! machine: every transport but LMTP-into-Dovecot is `error:`.
//! The master runs in the foreground (`master -d`) as our child, so it can be
//! signalled and reaped; `Drop` stops it.
//!
//! Needs root (Postfix's master will not start otherwise). Facts behind the
//! settings: /work/shared/notes/mail-servers.md.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::dovecot::{Dovecot, TMPDIR_ENV};

const START_ATTEMPTS: usize = 5;
const READY_TIMEOUT: Duration = Duration::from_secs(15);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
const MASTER: &str = "/usr/lib/postfix/sbin/master";

/// A second address Postfix accepts, delivered into the Dovecot user's
/// INBOX (a virtual alias), so a test can send to two recipients and tell the
/// copies apart by their `To:` header.
pub const SECOND_USER: &str = "lead@localhost";

/// A running (or stopped) private Postfix. Dropping it stops the daemon.
pub struct Postfix {
    submission_port: u16,
    smtps_port: u16,
    lmtp_port: u16,
    auth_socket: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    child: Option<Child>,
    /// Stops the master if this process dies without running `Drop`.
    watchdog: Option<Child>,
    dir: tempfile::TempDir,
}

impl Postfix {
    /// Starts an instance delivering to `dovecot`'s users (`alice@localhost`),
    /// reusing its TLS certificate (so the Dovecot CA file verifies both).
    pub fn start(dovecot: &Dovecot) -> Postfix {
        let root = fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false);
        assert!(
            root,
            "the Postfix harness needs root (Postfix's master refuses otherwise)"
        );
        assert!(
            Path::new(MASTER).exists(),
            "{MASTER} missing: run scripts/install-test-deps.sh"
        );
        let parent =
            std::env::var_os(TMPDIR_ENV).map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
        let dir = tempfile::Builder::new()
            .prefix("pf")
            .tempdir_in(&parent)
            .unwrap_or_else(|e| panic!("create temp dir under {}: {e}", parent.display()));
        // Postfix daemons run as `postfix` and must reach the queue under it.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod 755");
        let mut pf = Postfix {
            submission_port: 0,
            smtps_port: 0,
            lmtp_port: dovecot.lmtp_port(),
            auth_socket: dovecot.auth_socket(),
            cert: dovecot.cert_file(),
            key: dovecot.key_file(),
            child: None,
            watchdog: None,
            dir,
        };
        for sub in ["etc", "queue", "data"] {
            fs::create_dir(pf.dir().join(sub)).expect("create postfix dir");
        }
        let status = Command::new("chown")
            .arg("postfix")
            .arg(pf.dir().join("data"))
            .status()
            .expect("run chown");
        assert!(status.success(), "chown postfix data dir failed");

        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            [pf.submission_port, pf.smtps_port] = super::free_ports::<2>();
            pf.write_config();
            match pf.launch() {
                Ok(()) => return pf,
                Err(Launch::AddrInUse(text)) => last = text,
                Err(Launch::Failed(text)) => panic!("postfix failed to start:\n{text}"),
            }
        }
        panic!("postfix could not bind free ports after {START_ATTEMPTS} attempts:\n{last}");
    }

    /// SMTP with STARTTLS (like port 587).
    pub fn submission_port(&self) -> u16 {
        self.submission_port
    }

    /// SMTP over implicit TLS (like port 465).
    pub fn smtps_port(&self) -> u16 {
        self.smtps_port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Postfix's log so far (for assertion messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir().join("postfix.log")).unwrap_or_default()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Stops the daemon and waits until both ports refuse connections.
    /// Mail already queued stays in the queue for the next start.
    pub fn stop(&mut self) {
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(child.id(), "TERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for port in [self.submission_port, self.smtps_port] {
            while port_accepts(port) {
                if Instant::now() >= deadline {
                    eprintln!("postfix harness: port {port} still accepts after stop");
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Starts again on the same ports with the same queue.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.launch() {
                Ok(()) => return,
                Err(Launch::AddrInUse(text)) if Instant::now() >= deadline => {
                    panic!("postfix restart: ports still in use:\n{text}")
                }
                Err(Launch::AddrInUse(_)) => std::thread::sleep(Duration::from_millis(100)),
                Err(Launch::Failed(text)) => panic!("postfix failed to restart:\n{text}"),
            }
        }
    }

    fn write_config(&self) {
        let d = self.dir().display().to_string();
        let main = format!(
            "# Generated by tests/support/postfix.rs\n\
             compatibility_level = 3.6\n\
             queue_directory = {d}/queue\n\
             data_directory = {d}/data\n\
             maillog_file = {d}/postfix.log\n\
             maillog_file_prefixes = {d}\n\
             myhostname = localhost\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             mynetworks = 127.0.0.0/8\n\
             mydestination =\n\
             alias_maps =\n\
             alias_database =\n\
             smtputf8_enable = no\n\
             virtual_mailbox_domains = localhost\n\
             virtual_mailbox_maps = static:ok\n\
             virtual_alias_maps = inline:{{ {{{SECOND_USER}={}}} }}\n\
             virtual_transport = lmtp:inet:127.0.0.1:{lmtp}\n\
             default_transport = error:outbound mail disabled\n\
             relay_transport = error:outbound mail disabled\n\
             smtpd_tls_security_level = may\n\
             smtpd_tls_cert_file = {cert}\n\
             smtpd_tls_key_file = {key}\n\
             smtpd_tls_auth_only = yes\n\
             smtpd_sasl_auth_enable = yes\n\
             smtpd_sasl_type = dovecot\n\
             smtpd_sasl_path = {auth}\n\
             smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated reject_unauth_destination\n\
             # A stopped Dovecot must not turn into a bounce during a test: defer and retry soon.\n\
             queue_run_delay = 1s\n\
             minimal_backoff_time = 1s\n\
             maximal_backoff_time = 2s\n",
            super::dovecot::USER,
            lmtp = self.lmtp_port,
            cert = self.cert.display(),
            key = self.key.display(),
            auth = self.auth_socket.display(),
        );
        fs::write(self.dir().join("etc/main.cf"), main).expect("write main.cf");
        // chroot `n` everywhere: a chroot would need copies of /etc files.
        let master = format!(
            "127.0.0.1:{sub} inet n - n - - smtpd\n\
             127.0.0.1:{smtps} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes\n\
             pickup    unix  n - n 60    1 pickup\n\
             cleanup   unix  n - n -     0 cleanup\n\
             qmgr      unix  n - n 300   1 qmgr\n\
             tlsmgr    unix  - - n 1000? 1 tlsmgr\n\
             rewrite   unix  - - n -     - trivial-rewrite\n\
             bounce    unix  - - n -     0 bounce\n\
             defer     unix  - - n -     0 bounce\n\
             trace     unix  - - n -     0 bounce\n\
             verify    unix  - - n -     1 verify\n\
             flush     unix  n - n 1000? 0 flush\n\
             proxymap  unix  - - n -     - proxymap\n\
             proxywrite unix - - n -     1 proxymap\n\
             smtp      unix  - - n -     - smtp\n\
             relay     unix  - - n -     - smtp\n\
             showq     unix  n - n -     - showq\n\
             error     unix  - - n -     - error\n\
             retry     unix  - - n -     - error\n\
             discard   unix  - - n -     - discard\n\
             lmtp      unix  - - n -     - lmtp\n\
             anvil     unix  - - n -     1 anvil\n\
             scache    unix  - - n -     1 scache\n\
             postlog   unix-dgram n - n - 1 postlogd\n",
            sub = self.submission_port,
            smtps = self.smtps_port,
        );
        fs::write(self.dir().join("etc/master.cf"), master).expect("write master.cf");
    }

    fn launch(&mut self) -> Result<(), Launch> {
        let etc = self.dir().join("etc");
        // `postfix check` creates the queue's subdirectories with their owners.
        let out = Command::new("postfix")
            .arg("-c")
            .arg(&etc)
            .arg("check")
            .stdin(Stdio::null())
            .output()
            .expect("run postfix check (is postfix installed?)");
        if !out.status.success() {
            return Err(Launch::Failed(format!(
                "postfix check failed: {}{}\n--- log ---\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            )));
        }
        let log_len = self.log().len();
        let stderr = fs::File::create(self.dir().join("master.stderr")).expect("stderr file");
        let child = Command::new(MASTER)
            .arg("-c")
            .arg(&etc)
            .arg("-d")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn postfix master");
        let pid = child.id();
        self.child = Some(child);
        self.watchdog = spawn_watchdog(pid);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                self.stop();
                let text = format!(
                    "postfix master exited with {status}\n--- log ---\n{}",
                    self.log().get(log_len..).unwrap_or_default()
                );
                return Err(if text.contains("Address already in use") {
                    Launch::AddrInUse(text)
                } else {
                    Launch::Failed(text)
                });
            }
            // The implicit-TLS port says nothing until the client speaks TLS.
            if banner_readable(self.submission_port) && port_accepts(self.smtps_port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let text = format!(
                    "no SMTP banner on port {} within {READY_TIMEOUT:?}\n--- log ---\n{}",
                    self.submission_port,
                    self.log()
                );
                self.stop();
                return Err(Launch::Failed(text));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        self.stop();
    }
}

enum Launch {
    AddrInUse(String),
    Failed(String),
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Same trick as the Dovecot harness: a shell blocked on a pipe only we hold
/// SIGTERMs the master when this process dies without running `Drop`.
fn spawn_watchdog(pid: u32) -> Option<Child> {
    Command::new("sh")
        .arg("-c")
        .arg(r#"read -r _; kill -TERM "$1" 2>/dev/null"#)
        .arg("postfix-watchdog")
        .arg(pid.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn port_accepts(port: u16) -> bool {
    TcpStream::connect_timeout(&addr(port), Duration::from_millis(200)).is_ok()
}

/// True once a connection to `port` yields the `220` SMTP banner.
fn banner_readable(port: u16) -> bool {
    let Ok(stream) = TcpStream::connect_timeout(&addr(port), Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("220")
}
