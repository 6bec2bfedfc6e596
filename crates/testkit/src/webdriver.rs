//! A real browser for console tests: Debian's `chromedriver` started on a loopback port
//! (stopped by its PID when dropped), driving headless `chromium` through the W3C WebDriver
//! protocol — plain JSON over HTTP, spoken with [`crate::http::request`]. Missing browser or
//! driver is a test failure, never a skip.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::http::request;

/// A running `chromedriver`.
pub struct Driver {
    addr: SocketAddr,
    child: Child,
}

impl Driver {
    /// Starts `chromedriver` on a free loopback port (panics if it is not installed:
    /// `apt-get install chromium chromium-driver`, as `scripts/test.sh` does).
    pub async fn start() -> Driver {
        let port = crate::free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver; scripts/test.sh installs it)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen on {addr}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Driver { addr, child }
    }

    /// A new headless browser whose preferred language is `lang` (`en`, `ja` …).
    pub async fn session(&self, lang: &str) -> Browser {
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1200,900", format!("--lang={lang}")],
                "prefs": { "intl.accept_languages": lang }
            }
        }}});
        let r = post(self.addr, "/session", &caps).await;
        let id = r["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no browser session: {r}")).to_string();
        Browser { driver: self.addr, id }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post(addr: SocketAddr, path: &str, body: &Value) -> Value {
    let text = body.to_string();
    request(addr, "POST", path, &[("Content-Type", "application/json")], text.as_bytes()).await.json()
}

/// One browser session.
pub struct Browser {
    driver: SocketAddr,
    id: String,
}

/// An element found on the page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    fn path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.id)
    }

    /// Loads `url` and waits for the page.
    pub async fn goto(&self, url: &str) {
        let r = post(self.driver, &self.path("/url"), &json!({ "url": url })).await;
        assert!(r["value"].is_null(), "navigation to {url} failed: {r}");
    }

    /// The first element matching the CSS selector `css`.
    pub async fn find(&self, css: &str) -> Element {
        let r = post(self.driver, &self.path("/element"), &json!({ "using": "css selector", "value": css })).await;
        let v = r["value"].as_object().and_then(|o| o.values().next()).and_then(Value::as_str);
        Element(v.unwrap_or_else(|| panic!("no element {css}: {r}")).to_string())
    }

    /// Types `text` into `el`.
    pub async fn type_into(&self, el: &Element, text: &str) {
        post(self.driver, &self.path(&format!("/element/{}/value", el.0)), &json!({ "text": text })).await;
    }

    /// Clicks `el` (a submit button: the next page is loaded when this returns).
    pub async fn click(&self, el: &Element) {
        post(self.driver, &self.path(&format!("/element/{}/click", el.0)), &json!({})).await;
    }

    /// The text of `el` as shown.
    pub async fn text(&self, el: &Element) -> String {
        let r = request(self.driver, "GET", &self.path(&format!("/element/{}/text", el.0)), &[], b"").await.json();
        r["value"].as_str().unwrap_or_default().to_string()
    }

    /// The page's HTML as the browser holds it.
    pub async fn source(&self) -> String {
        let r = request(self.driver, "GET", &self.path("/source"), &[], b"").await.json();
        r["value"].as_str().unwrap_or_default().to_string()
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        let r = request(self.driver, "GET", &self.path("/url"), &[], b"").await.json();
        r["value"].as_str().unwrap_or_default().to_string()
    }

    /// Waits (at most 10 s) until the current URL ends with `suffix` — after a click that
    /// navigates, which WebDriver does not always wait for — and returns it.
    pub async fn wait_for_url(&self, suffix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let url = self.url().await;
            if url.ends_with(suffix) || Instant::now() > deadline {
                return url;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (at most 10 s) until the page's HTML contains `text`, and returns the HTML.
    pub async fn wait_for_text(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let html = self.source().await;
            if html.contains(text) || Instant::now() > deadline {
                return html;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `script` in the page (for checks only: the console itself has no script).
    pub async fn run(&self, script: &str) -> Value {
        post(self.driver, &self.path("/execute/sync"), &json!({ "script": script, "args": [] })).await["value"].clone()
    }

    /// Saves a screenshot of the page as PNG at `path`.
    pub async fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine;
        let r = request(self.driver, "GET", &self.path("/screenshot"), &[], b"").await.json();
        let png =
            base64::engine::general_purpose::STANDARD.decode(r["value"].as_str().unwrap_or_default()).expect("a PNG");
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(path, png).expect("write the screenshot");
    }

    /// Ends the session (the browser quits).
    pub async fn quit(self) {
        request(self.driver, "DELETE", &self.path(""), &[], b"").await;
    }
}
