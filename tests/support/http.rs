//! The HTTP API from a test: a config with `[http]` on a free loopback port
//! and three tokens (read, ingest, admin) in files, a real client, and an
//! SSE reader.

use std::time::{Duration, Instant};

use super::app::{TestConfig, maildir_config, parsers_dir};

pub const READ_TOKEN: &str = "read-token-5f2c9a";
pub const INGEST_TOKEN: &str = "ingest-token-81d0e4";
pub const ADMIN_TOKEN: &str = "admin-token-c7b313";

/// A Maildir config with the shipped parsers and `[http]` on a free port.
/// `http_extra` lines go into the `[http]` table. Returns the base URL.
pub fn http_config(http_extra: &str) -> (TestConfig, String) {
    let port = super::free_port();
    let cfg = maildir_config(&parsers_dir(), "");
    for (name, value) in [
        ("read", READ_TOKEN),
        ("ingest", INGEST_TOKEN),
        ("admin", ADMIN_TOKEN),
    ] {
        std::fs::write(
            cfg.dir.path().join(format!("{name}.token")),
            format!("{value}\n"),
        )
        .expect("write token file");
    }
    let mut text = std::fs::read_to_string(&cfg.path).expect("read config");
    text.push_str(&format!(
        "\n[http]\nlisten = \"127.0.0.1:{port}\"\n{http_extra}\n\
         [[http.token]]\nname = \"reader\"\ntoken_file = \"read.token\"\nscopes = [\"read\"]\n\
         [[http.token]]\nname = \"ingester\"\ntoken_file = \"ingest.token\"\nscopes = [\"ingest\"]\n\
         [[http.token]]\nname = \"ops\"\ntoken_file = \"admin.token\"\nscopes = [\"admin\"]\n"
    ));
    std::fs::write(&cfg.path, text).expect("write config");
    (cfg, format!("http://127.0.0.1:{port}"))
}

impl TestConfig {
    /// Writes a Standard Webhooks secret (`whsec_<base64 key>`) to `name`
    /// in the config's directory, where `secret_file = "name"` finds it.
    pub fn write_whsec(&self, name: &str, key: &[u8]) {
        use base64::Engine as _;
        let text = format!(
            "whsec_{}\n",
            base64::engine::general_purpose::STANDARD.encode(key)
        );
        std::fs::write(self.dir.path().join(name), text).expect("write webhook secret");
    }
}

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client")
}

/// Waits (bounded) until `/healthz` answers: the server binds before it
/// serves, and a test cannot await another process's bind.
pub async fn wait_healthy(base: &str) {
    let c = client();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = c.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "{base}/healthz never answered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone, Default)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
    /// A comment-only event (the heartbeat).
    pub comment: bool,
}

/// Reads events from an SSE response body.
pub struct SseReader {
    body: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>,
    >,
    buf: String,
}

impl SseReader {
    pub fn new(res: reqwest::Response) -> SseReader {
        SseReader {
            body: Box::pin(res.bytes_stream()),
            buf: String::new(),
        }
    }

    /// The next event, or `None` when the stream ends or breaks.
    pub async fn next(&mut self) -> Option<SseEvent> {
        use futures_util::StreamExt;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut ev = SseEvent::default();
                let mut has_field = false;
                for line in block.lines() {
                    if let Some(c) = line.strip_prefix(':') {
                        ev.comment = true;
                        ev.data = c.trim().to_string();
                    } else if let Some((k, v)) = line.split_once(':') {
                        has_field = true;
                        let v = v.strip_prefix(' ').unwrap_or(v);
                        match k {
                            "id" => ev.id = Some(v.to_string()),
                            "event" => ev.event = Some(v.to_string()),
                            "data" => ev.data.push_str(v),
                            _ => {}
                        }
                    }
                }
                if has_field {
                    ev.comment = false;
                }
                return Some(ev);
            }
            match self.body.next().await? {
                Ok(chunk) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                Err(_) => return None,
            }
        }
    }
}
