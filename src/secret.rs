//! Secrets by reference: `password_env`, `password_file`, token commands.
//! Resolved when used (so rotated values are picked up), never shown by
//! `Debug`, registered with `logging` so no log line can show them.
//! A leaf module: every config module reads [`Secret`] from here, so the
//! config modules do not import each other in a cycle.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;

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
