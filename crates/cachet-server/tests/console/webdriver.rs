//! A minimal W3C WebDriver client (the protocol is JSON over HTTP) for
//! driving Debian's `chromium` through `chromedriver`: only what the console
//! test uses, on the reqwest client the tests already have.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where Debian puts the browser and its driver, if installed.
pub fn find_browser() -> Result<(PathBuf, PathBuf), String> {
    let which = |names: &[&str]| {
        names.iter().map(PathBuf::from).find(|p| p.exists()).or_else(|| {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path).flat_map(|d| names.iter().map(move |n| d.join(n))).find(|p| p.exists())
        })
    };
    let browser =
        which(&["/usr/bin/chromium", "chromium", "chromium-browser"]).ok_or("chromium is not installed (apt-get install chromium)")?;
    let driver =
        which(&["/usr/bin/chromedriver", "chromedriver"]).ok_or("chromedriver is not installed (apt-get install chromium-driver)")?;
    Ok((browser, driver))
}

/// A chromedriver process and one headless browser session.
pub struct Browser {
    driver: Child,
    base: String,
    client: reqwest::Client,
    _profile: PathBuf,
}

impl Browser {
    /// Start chromedriver on a free loopback port and open a session.
    pub async fn start(browser: &Path, driver: &Path, profile: PathBuf) -> Result<Browser, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", driver.display()))?;
        let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().map_err(|e| e.to_string())?;
        let mut b = Browser { driver: child, base: format!("http://127.0.0.1:{port}"), client, _profile: profile.clone() };
        // Wait for the driver.
        for _ in 0..100 {
            if b.client.get(format!("{}/status", b.base)).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,1000",
            &format!("--user-data-dir={}", profile.display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
            "goog:chromeOptions": {"binary": browser.display().to_string(), "args": args}}}});
        let v = b.call(reqwest::Method::POST, "/session", Some(caps)).await?;
        let id = v["sessionId"].as_str().ok_or_else(|| format!("no session: {v}"))?;
        b.base = format!("{}/session/{id}", b.base);
        Ok(b)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut r = self.client.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.map_err(|e| format!("webdriver {path}: {e}"))?;
        let status = resp.status();
        let v: Value = resp.json().await.map_err(|e| format!("webdriver {path}: {e}"))?;
        if !status.is_success() {
            return Err(format!("webdriver {path}: {status} {}", v["value"]));
        }
        Ok(v["value"].clone())
    }

    pub async fn goto(&self, url: &str) -> Result<(), String> {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await.map(|_| ())
    }

    pub async fn url(&self) -> Result<String, String> {
        Ok(self.call(reqwest::Method::GET, "/url", None).await?.as_str().unwrap_or_default().to_string())
    }

    /// The page's HTML as the browser parsed it.
    pub async fn source(&self) -> Result<String, String> {
        Ok(self.call(reqwest::Method::GET, "/source", None).await?.as_str().unwrap_or_default().to_string())
    }

    /// The element `css` selects, looked for up to 5 s (a page still
    /// rendering on a busy machine); `count` does not wait.
    pub async fn find(&self, css: &str) -> Result<String, String> {
        let mut last = String::new();
        for _ in 0..50 {
            match self.call(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css}))).await {
                Ok(v) => return v[ELEMENT].as_str().map(str::to_string).ok_or_else(|| format!("no element {css}")),
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(last)
    }

    pub async fn count(&self, css: &str) -> Result<usize, String> {
        let v = self.call(reqwest::Method::POST, "/elements", Some(json!({"using": "css selector", "value": css}))).await?;
        Ok(v.as_array().map(Vec::len).unwrap_or(0))
    }

    pub async fn text(&self, css: &str) -> Result<String, String> {
        let e = self.find(css).await?;
        Ok(self.call(reqwest::Method::GET, &format!("/element/{e}/text"), None).await?.as_str().unwrap_or_default().to_string())
    }

    pub async fn type_into(&self, css: &str, text: &str) -> Result<(), String> {
        let e = self.find(css).await?;
        self.call(reqwest::Method::POST, &format!("/element/{e}/clear"), Some(json!({}))).await?;
        self.call(reqwest::Method::POST, &format!("/element/{e}/value"), Some(json!({"text": text}))).await.map(|_| ())
    }

    /// Click what navigates (a link, a form's button) and wait until the
    /// new page has loaded: WebDriver's click may return while the form's
    /// answer is still on its way.
    pub async fn click(&self, css: &str) -> Result<(), String> {
        let e = self.find(css).await?;
        self.eval("window.__cachetOldPage = true; return null").await?;
        self.call(reqwest::Method::POST, &format!("/element/{e}/click"), Some(json!({}))).await?;
        for _ in 0..150 {
            let loaded = self.eval("return window.__cachetOldPage !== true && document.readyState === 'complete'").await;
            if loaded == Ok(Value::Bool(true)) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("clicking {css} loaded no new page within 15 s"))
    }

    /// Run a script in the page and return its value.
    pub async fn eval(&self, script: &str) -> Result<Value, String> {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": []}))).await
    }

    pub async fn cookies(&self) -> Result<Vec<Value>, String> {
        Ok(self.call(reqwest::Method::GET, "/cookie", None).await?.as_array().cloned().unwrap_or_default())
    }

    /// Save a PNG of the window.
    pub async fn screenshot(&self, path: &Path) -> Result<(), String> {
        use base64::Engine;
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await?;
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or_default()).map_err(|e| e.to_string())?;
        std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// A full-page PNG: the window made as tall as the page first.
    pub async fn screenshot_full(&self, path: &Path) -> Result<(), String> {
        let h = self.eval("return document.documentElement.scrollHeight").await?.as_u64().unwrap_or(1000).clamp(600, 6000);
        self.call(reqwest::Method::POST, "/window/rect", Some(json!({"width": 1280, "height": h + 120}))).await?;
        let r = self.screenshot(path).await;
        self.call(reqwest::Method::POST, "/window/rect", Some(json!({"width": 1280, "height": 1000}))).await?;
        r
    }

    pub async fn quit(mut self) {
        let _ = self.call(reqwest::Method::DELETE, "", None).await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}
