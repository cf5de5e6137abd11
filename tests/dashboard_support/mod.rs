//! The dashboard from a real browser: Debian's headless Chromium (installed
//! by scripts/install-chromium.sh, which ./scripts/test.sh runs) driven over
//! the DevTools protocol, against the real binary's `serve`. Without
//! Chromium the tests fail, saying so; they never skip.
#![allow(dead_code)]
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::support::app::TestConfig;
use crate::support::bin::{spawn_logged, terminate};

pub const READ_TOKEN: &str = "dash-read-token-3b9e71";
pub const ADMIN_TOKEN: &str = "dash-admin-token-a4c2d8";

/// Adds `[http]` on a free port with a read token (`viewer`) and an admin
/// token (`ops`) in files. Returns the base URL.
pub fn add_http(cfg: &TestConfig) -> String {
    let port = crate::support::free_port();
    for (name, value) in [("read", READ_TOKEN), ("admin", ADMIN_TOKEN)] {
        std::fs::write(
            cfg.dir.path().join(format!("{name}.token")),
            format!("{value}\n"),
        )
        .unwrap();
    }
    let mut text = std::fs::read_to_string(&cfg.path).unwrap();
    let token_dir = cfg.dir.path().display();
    text.push_str(&format!(
        "\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
         [[http.token]]\nname = \"viewer\"\ntoken_file = \"{token_dir}/read.token\"\nscopes = [\"read\"]\n\
         [[http.token]]\nname = \"ops\"\ntoken_file = \"{token_dir}/admin.token\"\nscopes = [\"admin\"]\n"
    ));
    std::fs::write(&cfg.path, text).unwrap();
    format!("http://127.0.0.1:{port}")
}

/// The real binary's `serve`, stopped (SIGTERM) when dropped.
pub struct Serve {
    child: Child,
    pub log: PathBuf,
}

impl Serve {
    pub async fn start(cfg: &TestConfig, base: &str) -> Serve {
        let (child, log) = spawn_logged(cfg, &["serve"], "info");
        let mut serve = Serve { child, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if crate::support::http::client()
                .get(format!("{base}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return serve;
            }
            if let Ok(Some(status)) = serve.child.try_wait() {
                panic!(
                    "serve exited ({status}): {}",
                    std::fs::read_to_string(&serve.log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "serve never answered /healthz");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--remote-debugging-port=0",
];

/// One headless Chromium with one page, over the DevTools protocol.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
}

impl Browser {
    pub fn launch() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new("chromium")
            .args(FLAGS)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run chromium ({e}): install it with scripts/install-chromium.sh \
                     (./scripts/test.sh does); the dashboard tests do not skip"
                )
            });
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the DevTools address, then keeps draining stderr so Chromium never blocks on it.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium printed no DevTools address");
        let (ws, _) = tungstenite::connect(url.as_str()).expect("connect to chromium DevTools");
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        }
        let mut b = Browser {
            child,
            _profile: profile,
            ws,
            session: String::new(),
            next_id: 0,
        };
        let target = b.call(
            "Target.createTarget",
            json!({ "url": "about:blank" }),
            false,
        );
        let attached = b.call(
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
            false,
        );
        b.session = attached["sessionId"].as_str().unwrap().to_string();
        b.send("Page.enable", json!({}));
        b.send("Runtime.enable", json!({}));
        b
    }

    fn call(&mut self, method: &str, params: Value, on_page: bool) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if on_page {
            msg["sessionId"] = json!(self.session);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .expect("send to chromium");
        loop {
            let m = self.ws.read().expect("read from chromium");
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["id"].as_u64() == Some(id) {
                if let Some(e) = v.get("error") {
                    return json!({ "__error": e });
                }
                return v["result"].clone();
            }
        }
    }

    /// A DevTools command on the page; panics on a protocol error.
    pub fn send(&mut self, method: &str, params: Value) -> Value {
        let r = self.call(method, params, true);
        assert!(r.get("__error").is_none(), "{method}: {r}");
        r
    }

    /// Evaluates `js` in the page (awaiting a promise); `None` when the page
    /// is between documents or the script threw.
    pub fn try_eval(&mut self, js: &str) -> Option<Value> {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": js, "returnByValue": true, "awaitPromise": true }),
            true,
        );
        if r.get("__error").is_some() || r.get("exceptionDetails").is_some() {
            return None;
        }
        Some(r["result"]["value"].clone())
    }

    pub fn eval(&mut self, js: &str) -> Value {
        self.try_eval(js)
            .unwrap_or_else(|| panic!("script failed in the page: {js}"))
    }

    /// Waits (bounded) until `js` is true in the page; returns how long that took.
    pub fn wait_for(&mut self, js: &str, limit: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if self.try_eval(js) == Some(Value::Bool(true)) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "not true within {limit:?}: {js}\npage: {}",
                self.try_eval("document.body ? document.body.innerText : ''")
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_new_document(&mut self) {
        self.wait_for(
            "window.__dw_old === undefined && document.readyState === 'complete'",
            Duration::from_secs(20),
        );
    }

    /// Loads `url` and waits for the page to be complete.
    pub fn goto(&mut self, url: &str) {
        let _ = self.try_eval("window.__dw_old = 1");
        self.send("Page.navigate", json!({ "url": url }));
        self.wait_new_document();
    }

    /// Submits the form `selector` (after `fill`, a script that fills it in)
    /// the way a click would, and waits for the page that answers.
    pub fn submit(&mut self, selector: &str, fill: &str) {
        self.eval(&format!(
            "window.__dw_old = 1; (function(){{ {fill} }})(); \
             document.querySelector({sel}).requestSubmit(); true",
            sel = serde_json::to_string(selector).unwrap()
        ));
        self.wait_new_document();
    }

    /// Signs in through the form with `token`, as a person would.
    pub fn sign_in(&mut self, base: &str, token: &str) {
        self.goto(&format!("{base}/signin"));
        self.submit(
            "form[action='/signin']",
            &format!(
                "document.getElementById('token').value = {};",
                serde_json::to_string(token).unwrap()
            ),
        );
        let path = self.eval("location.pathname");
        assert_eq!(path, json!("/"), "sign-in did not land on the vendors page");
    }

    /// The page as the browser built it (what scripts would have changed included).
    pub fn dom(&mut self) -> String {
        self.eval("document.documentElement.outerHTML")
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Renders at `width` px, asserts nothing scrolls sideways, and saves a
    /// full-page PNG to `png`.
    pub fn screenshot(&mut self, url: &str, width: u32, png: &Path) {
        let metrics = |h: u64| json!({ "width": width, "height": h, "deviceScaleFactor": 1, "mobile": width < 500 });
        self.send("Emulation.setDeviceMetricsOverride", metrics(900));
        self.goto(url);
        let scroll = self
            .eval("document.documentElement.scrollWidth")
            .as_u64()
            .unwrap();
        assert!(
            scroll <= u64::from(width),
            "{url} at {width} px scrolls sideways (scrollWidth {scroll})"
        );
        let height = self
            .eval("document.documentElement.scrollHeight")
            .as_u64()
            .unwrap()
            .clamp(600, 3000);
        self.send("Emulation.setDeviceMetricsOverride", metrics(height));
        let shot = self.send("Page.captureScreenshot", json!({ "format": "png" }));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(png, bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `Some(true)` when the page ran none of the payloads: no `__pwned` global,
/// no `<script>` but live.js, no `<img>`, `<iframe>` or inline handler.
pub const INERT: &str = "window.__pwned === undefined \
    && Array.from(document.scripts).every(s => s.getAttribute('src') === '/assets/live.js') \
    && document.querySelectorAll('img, iframe, object, embed, svg').length === 0 \
    && Array.from(document.querySelectorAll('*')).every(e => \
         Array.from(e.attributes).every(a => !a.name.startsWith('on')))";

/// The demo (four vendors' fixture mail, an export per vendor) with policy
/// `flag` so its drifts stay open, the dashboard's tokens, and a few
/// hostile messages: script payloads in a subject, a status, a field and an
/// attachment name. Returns the config and the dashboard's base URL.
pub fn seeded() -> (TestConfig, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("driftwatch.toml");
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/driftwatch.toml"))
            .unwrap();
    let db = crate::support::db::Db::for_data_dir(&dir.path().join("data"));
    std::fs::write(
        &path,
        format!(
            "{}{}",
            db.config_line(),
            shipped.replace("policy = \"fix\"", "policy = \"flag\"")
        ),
    )
    .unwrap();
    let cfg = TestConfig { dir, path, db };
    let base = add_http(&cfg);
    // Webhook intake for Acme, authenticated by a token with `ingest` (admin).
    let mut text = std::fs::read_to_string(&cfg.path).unwrap();
    text.push_str(
        "[[http.hook]]\nvendor = \"acme-appraisal\"\n[http.hook.mapping]\n\
         order_ref = \"/order\"\nstatus = \"/status\"\nevent_time = \"/at\"\n\
         [http.hook.status_map]\nACPT = \"accepted\"\n",
    );
    std::fs::write(&cfg.path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_driftwatch"))
        .arg("demo")
        .arg("--dir")
        .arg(cfg.dir.path())
        .env("DRIFTWATCH_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "demo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new = cfg.dir.path().join("Maildir/new");
    for (name, raw) in hostile_mail() {
        std::fs::write(new.join(name), raw).unwrap();
    }
    crate::support::bin::run_to_completion(&cfg);
    (cfg, base)
}

pub const SUBJECT_PAYLOAD: &str = "<script>window.__pwned='subject'</script>Invoice";
pub const STATUS_PAYLOAD: &str = "<img src=x onerror=\"window.__pwned='status'\">";
pub const FIELD_PAYLOAD: &str = "<svg onload=\"window.__pwned='field'\"></svg>Jane";
pub const FILE_PAYLOAD: &str = "<img src=y onerror=\"window.__pwned='file'\">.csv";

/// Acme status mail for `order` with `status` and `appraiser`.
pub fn acme_mail(id: &str, order: &str, status: &str, appraiser: &str) -> Vec<u8> {
    format!(
        "From: Acme AMC Status <status@acme-amc.example>\r\nTo: orders@lender.example\r\n\
         Subject: Order {order} update\r\nDate: Tue, 24 Nov 2026 09:14:00 -0600\r\n\
         Message-ID: <{id}@acme-amc.example>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Order #: {order}\r\nStatus: {status}\r\nUpdated: 11/24/2026 09:12 AM\r\n\
         Appraiser: {appraiser}\r\nFee: $525.00\r\n"
    )
    .into_bytes()
}

fn hostile_mail() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        // A stranger's subject: quarantined (unknown sender), shown on the quarantine page.
        (
            "hostile-subject",
            format!(
                "From: Someone <x@stranger.example>\r\nTo: orders@lender.example\r\n\
                 Subject: {SUBJECT_PAYLOAD}\r\nDate: Tue, 24 Nov 2026 09:00:00 -0600\r\n\
                 Message-ID: <hostile-subject@stranger.example>\r\n\r\nhello\r\n"
            )
            .into_bytes(),
        ),
        // A status no rule maps: quarantined with the status in its reason.
        (
            "hostile-status",
            acme_mail("hostile-status", "48291", STATUS_PAYLOAD, "Sam Lee"),
        ),
        // A field value: parsed into a delta for order 48292.
        (
            "hostile-field",
            acme_mail("hostile-field", "48292", "Accepted", FIELD_PAYLOAD),
        ),
        // An attachment's file name.
        (
            "hostile-file",
            format!(
                "From: Someone <y@stranger.example>\r\nTo: orders@lender.example\r\n\
                 Subject: orders attached\r\nDate: Tue, 24 Nov 2026 09:00:00 -0600\r\n\
                 Message-ID: <hostile-file@stranger.example>\r\nMIME-Version: 1.0\r\n\
                 Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
                 Content-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n\
                 Content-Type: text/csv; name=\"{FILE_PAYLOAD}\"\r\n\
                 Content-Disposition: attachment; filename=\"{FILE_PAYLOAD}\"\r\n\r\n\
                 a,b\r\n1,2\r\n--b--\r\n"
            )
            .into_bytes(),
        ),
    ]
}
