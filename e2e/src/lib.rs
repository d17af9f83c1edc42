//! What the browser tests stand on: the real application on a free port, chromedriver as a child
//! process, and a headless Chromium session with waits that poll instead of sleeping.

use etx_core::config::Config;
use etx_server::startup::Application;
use fantoccini::elements::Element;
use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long any single wait may take. Generous for a loaded two-core CI machine, yet a broken
/// page still fails in seconds rather than hanging the run.
pub const TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);

/// axe-core, injected into pages by [`Browser::assert_accessible`].
const AXE: &str = include_str!("../vendor/axe-core/axe.min.js");

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The application, started the same way the integration tests start it.
pub struct App {
    /// Uses `localhost` rather than the bound IP: cookies are kept per host name, and this is the
    /// name a person would type.
    pub base: String,
    /// The running application's state, for acting as another party (an admin, a sender).
    pub state: etx_server::state::AppState,
    _data_dir: TempDir,
}

impl App {
    pub async fn spawn() -> App {
        Self::spawn_with(|_| {}).await
    }

    /// With `adjust` applied to the configuration last.
    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> App {
        let data_dir = TempDir::new("etx-e2e-data");
        let mut c = Config::defaults();
        c.bind = (Ipv4Addr::LOCALHOST, 0).into();
        c.data_dir = data_dir.path().to_path_buf();
        c.secret_key = Some("e2e-secret-key-that-is-long-enough-0123456789".into());
        // Cheap hashing keeps the run fast; the production parameters are tested in etx-auth.
        c.auth.argon2_memory_kib = 64;
        c.auth.argon2_iterations = 1;
        c.database_url = fresh_database_url().await;
        adjust(&mut c);
        let app = Application::build(c).await.expect("application starts");
        let port = app.local_addr().port();
        let state = app.state.clone();
        tokio::spawn(app.run_until(std::future::pending()));
        App {
            base: format!("http://localhost:{port}"),
            state,
            _data_dir: data_dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// With `TEST_DATABASE_URL` set (the PostgreSQL pass), a new empty schema in that database, so
/// runs never see each other's rows; otherwise `None`, which means SQLite in the data dir.
async fn fresh_database_url() -> Option<String> {
    let base = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|s| !s.is_empty())?;
    Some(
        etx_db::Db::isolated_schema_url(&base)
            .await
            .expect("TEST_DATABASE_URL must be reachable"),
    )
}

/// A chromedriver child process on a free port.
///
/// It runs in its own process group, and dropping this kills the whole group: Chromium is a
/// grandchild, and a panicking test never reaches the polite session close, which would otherwise
/// leave browsers running after the test binary exits.
pub struct Chromedriver {
    child: Child,
    pub url: String,
    logs: TempDir,
}

impl Chromedriver {
    pub async fn start() -> Chromedriver {
        for (bin, what) in [(CHROMEDRIVER, "chromedriver"), (CHROMIUM, "chromium")] {
            assert!(
                Path::new(bin).is_file(),
                "{what} not found at {bin}; the browser tests need it. \
                 Install it with scripts/e2e-deps.sh (Debian packages chromium and chromium-driver)."
            );
        }
        let logs = TempDir::new("etx-e2e-chromedriver");
        let stderr_path = logs.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).expect("create chromedriver log");
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!(
                "--log-path={}",
                logs.path().join("chromedriver.log").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
        let mut driver = Chromedriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            logs,
        };
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = driver.child.try_wait().expect("poll chromedriver") {
                panic!(
                    "chromedriver exited ({status}) before answering on port {port}:\n{}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
            if status_ready(port) {
                return driver;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer on port {port} within {TIMEOUT:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// chromedriver's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("chromedriver.log")).unwrap_or_default()
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now. Another process could take it before chromedriver binds
/// it; that shows up as chromedriver exiting early with a clear message, not as a hang.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("find a free port")
        .port()
}

/// Whether chromedriver's `/status` says it is ready for sessions. A hand-written request keeps
/// this free of an HTTP client dependency. chromedriver ignores HTTP/1.0 and keeps HTTP/1.1
/// connections open even when asked to close, so this reads until the answer is known rather
/// than to end of stream.
fn status_ready(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let req =
        format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n @ 1..) = s.read(&mut buf) {
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer);
        if text.contains("\"ready\":true") {
            return true;
        }
        if text.contains("\"ready\":false") {
            return false;
        }
    }
    false
}

/// One headless Chromium session. Fields drop in order: the session handle, then chromedriver
/// (taking Chromium with it), then the profile directory Chromium was writing to.
pub struct Browser {
    pub client: Client,
    driver: Chromedriver,
    _profile: TempDir,
}

impl Browser {
    pub async fn launch() -> Browser {
        let driver = Chromedriver::start().await;
        let profile = TempDir::new("etx-e2e-profile");
        let args = [
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--disable-quic".into(),
            "--window-size=1280,900".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = Capabilities::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": CHROMIUM, "args": args }),
        );
        let client = match ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url)
            .await
        {
            Ok(c) => c,
            Err(e) => panic!(
                "cannot start a Chromium session through chromedriver: {e}\n{}",
                driver.log()
            ),
        };
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Ends the WebDriver session so Chromium shuts down cleanly; dropping `Browser` without this
    /// still kills it.
    pub async fn close(self) {
        let Browser {
            client,
            driver,
            _profile,
        } = self;
        if let Err(e) = client.close().await {
            eprintln!("closing the browser session failed: {e}\n{}", driver.log());
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The first element matching `css`, waiting for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(TIMEOUT)
            .every(POLL)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(el) => el,
            Err(e) => panic!("no element `{css}` on {}: {e}", self.path().await),
        }
    }

    /// Whether the first element matching `css` is shown (laid out, not inside something hidden).
    pub async fn visible(&self, css: &str) -> bool {
        self.find(css).await;
        self.client
            .execute(
                "const e = document.querySelector(arguments[0]); \
                 return e.offsetParent !== null && e.getClientRects().length > 0;",
                vec![css.into()],
            )
            .await
            .unwrap_or_else(|e| panic!("check `{css}`: {e}"))
            == Value::Bool(true)
    }

    pub async fn exists(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .expect("query elements")
            .is_empty()
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("element text")
    }

    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.find(css)
            .await
            .attr(name)
            .await
            .expect("element attribute")
    }

    pub async fn fill(&self, css: &str, value: &str) {
        let el = self.find(css).await;
        el.clear().await.expect("clear field");
        el.send_keys(value)
            .await
            .unwrap_or_else(|e| panic!("type into `{css}`: {e}"));
    }

    pub async fn click(&self, css: &str) {
        let target = self.find(css).await;
        // What sits in a closed header menu is reached as a person does: open the menu first.
        let menu = self
            .client
            .execute(
                "const d = document.querySelector(arguments[0]).closest('details:not([open])'); \
                 if (!d) return false; \
                 d.querySelector('summary').setAttribute('data-opening', ''); return true;",
                vec![css.into()],
            )
            .await
            .unwrap_or_else(|e| panic!("find the menu of `{css}`: {e}"));
        if menu == Value::Bool(true) {
            let summary = self.find("summary[data-opening]").await;
            summary
                .click()
                .await
                .unwrap_or_else(|e| panic!("open the menu of `{css}`: {e}"));
            self.client
                .execute(
                    "document.querySelector('summary[data-opening]').removeAttribute('data-opening');",
                    vec![],
                )
                .await
                .unwrap_or_else(|e| panic!("mark the menu of `{css}`: {e}"));
        }
        target
            .click()
            .await
            .unwrap_or_else(|e| panic!("click `{css}`: {e}"));
    }

    /// Chooses `value` in the `<select>` at `css`, as a person picking it would.
    pub async fn select(&self, css: &str, value: &str) {
        self.find(css).await;
        let script = "const s = document.querySelector(arguments[0]); \
                      if (![...s.options].some(o => o.value === arguments[1])) return false; \
                      s.value = arguments[1]; s.dispatchEvent(new Event('change')); return true;";
        let ok = self
            .client
            .execute(script, vec![css.into(), value.into()])
            .await
            .unwrap_or_else(|e| panic!("select {value} in `{css}`: {e}"));
        assert_eq!(ok, Value::Bool(true), "`{css}` has no option {value}");
    }

    /// Opens `url` again and again (up to the usual timeout) until `script` (a function body)
    /// returns something other than `false`/`null`: for what changes on the server, not live.
    pub async fn reload_until(&self, url: &str, script: &str, what: &str) -> Value {
        self.poll_js(Some(url), script, what).await
    }

    /// Path and query of the current page, e.g. `/profile?msg=avatar`.
    pub async fn path(&self) -> String {
        match self.client.current_url().await {
            Ok(u) => match u.query() {
                Some(q) => format!("{}?{q}", u.path()),
                None => u.path().to_string(),
            },
            Err(e) => format!("<unknown page: {e}>"),
        }
    }

    /// Waits until the browser shows `path` (with query, if `path` has one). Form posts answer
    /// with redirects, so this is how a test knows the next page has arrived.
    pub async fn wait_for_path(&self, path: &str) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let now = self.path().await;
            let matches = if path.contains('?') {
                now == path
            } else {
                now.split('?').next() == Some(path)
            };
            if matches {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "expected to reach {path} within {TIMEOUT:?}, still on {now}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Runs `script` (a function body that `return`s a value) until it yields something other
    /// than `false`/`null`, and returns that.
    pub async fn wait_for_js(&self, script: &str, what: &str) -> Value {
        self.poll_js(None, script, what).await
    }

    async fn poll_js(&self, reload: Option<&str>, script: &str, what: &str) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(url) = reload {
                self.goto(url).await;
            }
            let v = self
                .client
                .execute(script, vec![])
                .await
                .unwrap_or_else(|e| panic!("run script for {what}: {e}"));
            if !matches!(v, Value::Null | Value::Bool(false)) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not true within {TIMEOUT:?} on {}",
                self.path().await
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Runs axe-core (vendored, see `e2e/vendor/axe-core`) on the current page and panics with
    /// each violation (rule, impact, the offending elements) if it finds any. Checks the WCAG 2.x
    /// A and AA rules and axe's best practices.
    pub async fn assert_accessible(&self, what: &str) {
        let loaded = self
            .client
            .execute("return typeof window.axe === 'object';", vec![])
            .await
            .expect("look for axe");
        if loaded != Value::Bool(true) {
            self.client
                .execute(AXE, vec![])
                .await
                .unwrap_or_else(|e| panic!("inject axe-core on {what}: {e}"));
        }
        let result = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1]; \
                 axe.run(document, { runOnly: { type: 'tag', values: \
                   ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'] } }) \
                   .then(r => done({ passed: r.passes.length, violations: r.violations.map(v => \
                     v.id + ' (' + v.impact + '): ' + v.help + ' at ' + \
                     v.nodes.map(n => n.target.join(' ')).join(', ')) })) \
                   .catch(e => done({ passed: 0, violations: ['axe failed: ' + e] }));",
                vec![],
            )
            .await
            .unwrap_or_else(|e| panic!("run axe-core on {what}: {e}"));
        let found: Vec<String> =
            serde_json::from_value(result["violations"].clone()).expect("a list of violations");
        assert!(
            result["passed"].as_u64().unwrap_or(0) > 0 || !found.is_empty(),
            "axe-core checked nothing on {what}"
        );
        assert!(
            found.is_empty(),
            "accessibility problems on {what} ({}):\n{}",
            self.path().await,
            found.join("\n")
        );
    }

    /// Presses a key (`fantoccini::key::Key`, e.g. Tab or Enter) in whatever has the focus,
    /// as a keyboard would.
    pub async fn press(&self, key: fantoccini::key::Key) {
        let focused = self
            .client
            .active_element()
            .await
            .expect("find the focused element");
        focused
            .send_keys(&String::from(char::from(key)))
            .await
            .unwrap_or_else(|e| panic!("press {key:?}: {e}"));
    }

    /// Presses Tab until the element matching `css` has the focus (at most 40 times); panics
    /// if it never does. Answers whether the focus was visible on it (an outline drawn).
    /// Presses Tab until `css` has the focus; whether its focus ring shows (an outline at
    /// least 2 px wide whose colour contrasts 3:1 or more with what is behind it).
    pub async fn tab_to(&self, css: &str) -> bool {
        for _ in 0..40 {
            let here = self
                .client
                .execute(
                    "const e = document.activeElement; \
                     if (!e || !e.matches(arguments[0])) return null; \
                     const s = getComputedStyle(e); \
                     if (s.outlineStyle === 'none' || parseFloat(s.outlineWidth) < 2) return false; \
                     const rgb = c => (c.match(/[\\d.]+/g) || []).map(Number); \
                     let bg = [255, 255, 255], n = e.parentElement; \
                     while (n) { const c = rgb(getComputedStyle(n).backgroundColor); \
                       if (c.length === 3 || (c.length === 4 && c[3] > 0)) { bg = c.slice(0, 3); break; } \
                       n = n.parentElement; } \
                     const lum = c => { const [r, g, b] = c.slice(0, 3).map(v => { v /= 255; \
                       return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }); \
                       return 0.2126 * r + 0.7152 * g + 0.0722 * b; }; \
                     const [a, b] = [lum(rgb(s.outlineColor)), lum(bg)]; \
                     return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05) >= 3;",
                    vec![css.into()],
                )
                .await
                .unwrap_or_else(|e| panic!("look at the focus: {e}"));
            if let Value::Bool(visible) = here {
                return visible;
            }
            self.press(fantoccini::key::Key::Tab).await;
        }
        panic!("Tab never reached `{css}` on {}", self.path().await);
    }

    /// Resizes the window so that the page's viewport is `width` × `height` CSS pixels.
    pub async fn set_viewport(&self, width: u32, height: u32) {
        // The window's frame differs by platform: measure it, then size the window around it.
        let frame = self
            .client
            .execute(
                "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight];",
                vec![],
            )
            .await
            .expect("measure the window frame");
        let dw = frame[0].as_u64().unwrap_or(0) as u32;
        let dh = frame[1].as_u64().unwrap_or(0) as u32;
        self.client
            .set_window_size(width + dw, height + dh)
            .await
            .unwrap_or_else(|e| panic!("resize the window to {width}×{height}: {e}"));
    }

    /// Panics if the page is wider than the viewport (WCAG 1.4.10, reflow): what does not fit
    /// must wrap or scroll inside its own box.
    pub async fn assert_reflows(&self, what: &str) {
        let v = self
            .client
            .execute(
                "const w = document.documentElement.clientWidth; \
                 const wide = [...document.querySelectorAll('body *')] \
                   .filter(e => e.getBoundingClientRect().right > w + 1 && e.offsetParent !== null) \
                   .slice(0, 5).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + \
                     (e.className && typeof e.className === 'string' ? '.' + e.className.trim().replace(/ +/g, '.') : '')); \
                 return [document.documentElement.scrollWidth, w, wide];",
                vec![],
            )
            .await
            .unwrap_or_else(|e| panic!("measure {what}: {e}"));
        let (page, viewport) = (v[0].as_u64().unwrap_or(0), v[1].as_u64().unwrap_or(0));
        assert!(
            page <= viewport,
            "{what} ({}) is {page} px wide in a {viewport} px viewport; wider elements: {}",
            self.path().await,
            v[2]
        );
    }

    pub async fn screenshot(&self, to: &Path) {
        let png = self.client.screenshot().await.expect("take screenshot");
        std::fs::write(to, png).unwrap_or_else(|e| panic!("write {}: {e}", to.display()));
    }
}
