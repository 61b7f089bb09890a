//! First contentful paint of a console page in headless Chromium (Debian's `chromium` and
//! `chromium-driver`, as the browser tests use), driven over WebDriver: each sample is a fresh
//! navigation, timed by the browser itself (`performance` paint entries), so it holds the
//! server's answer, the stylesheet and the page's layout and paint.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};

use super::BenchResult;

const DRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A headless Chromium session, ended when dropped.
pub(crate) struct Chromium {
    driver: Child,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Chromium {
    /// A session with a desktop window, or `None` when Chromium is not installed.
    pub(crate) async fn start() -> BenchResult<Option<Chromium>> {
        if !std::path::Path::new(DRIVER).exists() || !std::path::Path::new(CHROMIUM).exists() {
            return Ok(None);
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let driver = Command::new(DRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..500 {
            if http.get(format!("{base}/status")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let profile = tempfile::tempdir()?;
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,800",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": CHROMIUM, "args": args}}}});
        let answer = post(&http, &format!("{base}/session"), &caps).await?;
        let session = answer["value"]["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session: {answer}"))?;
        Ok(Some(Chromium {
            session: format!("{base}/session/{session}"),
            driver,
            http,
            _profile: profile,
        }))
    }

    async fn call(&self, path: &str, body: Value) -> BenchResult<Value> {
        let answer = post(&self.http, &format!("{}{path}", self.session), &body).await?;
        Ok(answer["value"].clone())
    }

    /// The first contentful paint of `url` in milliseconds, for each of `samples` fresh
    /// navigations (after one to warm the stylesheet and the connection, as a person
    /// reloading the page has them).
    pub(crate) async fn first_paints(&self, url: &str, samples: usize) -> BenchResult<Vec<f64>> {
        let fcp = "const e = performance.getEntriesByName('first-contentful-paint')[0]; \
                   return e ? e.startTime : null";
        let mut paints = Vec::new();
        for n in 0..=samples {
            // A different query each time: a navigation, never a cached page.
            let sep = if url.contains('?') { '&' } else { '?' };
            self.call("/url", json!({"url": format!("{url}{sep}fresh={n}")}))
                .await?;
            let mut paint = Value::Null;
            for _ in 0..100 {
                paint = self
                    .call("/execute/sync", json!({"script": fcp, "args": []}))
                    .await?;
                if !paint.is_null() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let ms = paint.as_f64().ok_or("the page was never painted")?;
            if n > 0 {
                paints.push(ms);
            }
        }
        Ok(paints)
    }
}

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> BenchResult<Value> {
    let text = http
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await?
        .text()
        .await?;
    Ok(serde_json::from_str(&text)?)
}

impl Chromium {
    /// The number of elements of the page last opened.
    pub(crate) async fn elements(&self) -> BenchResult<u64> {
        let n = self
            .call(
                "/execute/sync",
                json!({"script": "return document.getElementsByTagName('*').length", "args": []}),
            )
            .await?;
        Ok(n.as_u64().unwrap_or(0))
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
