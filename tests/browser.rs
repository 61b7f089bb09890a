//! The web console in a real headless Chromium (Debian's `chromium` and `chromium-driver`,
//! installed by .ci/test.sh), driven over WebDriver: the board shows the versions in each phase
//! after a promotion; a run page shows test output appearing while the test runs; hostile
//! test output and commit messages are shown as text and never run.
//! `PHASEGATE_SCREENSHOTS=docs cargo test --test integration browser::` refreshes the README's
//! screenshots.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::support::*;
use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Value, json};

const HOSTILE: &str = r#"<script>window.canary=1</script>"><img src=x onerror="window.canary=2;document.title='pwned'">"#;

/// A Chromium session through chromedriver.
struct Browser {
    base: String,
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
    http: reqwest::Client,
}

impl Browser {
    async fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian chromium-driver) is installed by .ci/test.sh");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..500 {
            if http.get(format!("{base}/status")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let profile = tempfile::tempdir().expect("profile dir");
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
            "--window-size=1100,760",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": "/usr/bin/chromium", "args": args}}}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .header("content-type", "application/json")
            .body(caps.to_string())
            .send()
            .await
            .expect("new session")
            .text()
            .await
            .map(|t| serde_json::from_str(&t).expect("session JSON"))
            .expect("session answer");
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_string();
        Browser {
            base,
            session,
            driver,
            _profile: profile,
            http,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, url);
        if !body.is_null() {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let answer: Value = request
            .send()
            .await
            .expect("chromedriver answers")
            .text()
            .await
            .map(|t| serde_json::from_str(&t).expect("JSON"))
            .expect("answer");
        answer["value"].clone()
    }

    async fn open(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({"url": url}))
            .await;
    }

    /// Runs `script` (a function body) in the page and returns its value.
    async fn eval(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// Waits until `script` returns true in the page (20 s at most).
    async fn until(&self, script: &str) {
        for _ in 0..400 {
            if self.eval(script).await == json!(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the page never satisfied: {script}");
    }

    /// Saves a screenshot under `$PHASEGATE_SCREENSHOTS` when it is set.
    async fn screenshot(&self, name: &str) {
        let png = self
            .call(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        let bytes = STANDARD
            .decode(png.as_str().expect("base64 PNG"))
            .expect("PNG");
        assert!(bytes.starts_with(b"\x89PNG"), "a PNG screenshot");
        if let Ok(dir) = std::env::var("PHASEGATE_SCREENSHOTS") {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(dir)
                .join(name);
            std::fs::write(path, bytes).expect("write the screenshot");
        }
    }

    async fn quit(mut self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.http.delete(url).send().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[tokio::test]
async fn the_board_in_a_browser_shows_the_versions_in_each_phase_after_a_promotion() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let server = TestServer::start(test_config()).await;
    let spec = petstore(&file_url(&bare), &[("test", "none")]);
    server
        .sensor()
        .await
        .fire(&spec, &sync_event(&synced), FROM_TEST)
        .await
        .expect("promotes");
    let browser = Browser::start().await;
    browser.open(&server.console_url()).await;
    let phases = browser
        .eval(
            "return [...document.querySelectorAll('.phase')].map(p => \
             p.querySelector('.name').textContent + '=' + p.querySelector('.version').textContent)",
        )
        .await;
    assert_eq!(phases, json!(["test=2.0", "prod=2.0"]));
    let transition = browser
        .eval("return document.querySelector('.transition .outcome').textContent")
        .await;
    assert_eq!(transition, "promoted");
    browser.screenshot("console-board.png").await;
    browser.quit().await;
    server.stop().await;
}

#[tokio::test]
async fn a_run_page_follows_the_test_output_live_and_runs_nothing_hostile() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let (first_gate, last_gate) = (root.join("gate1"), root.join("gate2"));
    let script = format!(
        "echo 'campaign: 12 tests'; echo '{}'; while [ ! -e {} ]; do sleep 0.05; done; \
         echo 'GET /pet 200 OK'; while [ ! -e {} ]; do sleep 0.05; done; echo 'all passed'",
        HOSTILE.replace('\'', r"'\''"),
        first_gate.display(),
        last_gate.display()
    );
    let command = serde_json::to_string(&["sh", "-c", &script]).expect("json");
    let message = format!("Promote {{version}} {HOSTILE}");
    let spec = petstore(
        &file_url(&bare),
        &[
            ("test", "command"),
            ("testCommand", &command),
            ("mode", "async"),
            ("commitMessage", &message),
        ],
    );
    let server = TestServer::start(test_config()).await;
    let accepted = server
        .sensor()
        .await
        .fire(&spec, &sync_event(&synced), FROM_TEST)
        .await
        .expect("accepted");
    let id = accepted.response["run"].as_str().expect("run").to_string();
    let browser = Browser::start().await;
    browser
        .open(&format!("{}/runs/{id}", server.console_url()))
        .await;

    // The hostile line is in the page as text (so far, or live), and did nothing.
    browser
        .until(&format!(
            "return document.getElementById('log').textContent.includes({})",
            json!(HOSTILE)
        ))
        .await;
    // A line printed while the page is open appears without a reload, while the test runs.
    std::fs::write(&first_gate, "").expect("open the first gate");
    browser
        .until(
            "return document.getElementById('log').textContent.includes('GET /pet 200 OK') \
             && document.getElementById('stage').textContent === 'testing'",
        )
        .await;
    let harmless = "return window.canary === undefined && !document.title.includes('pwned') \
                    && document.querySelectorAll('main img, main script').length === 0";
    assert_eq!(browser.eval(harmless).await, json!(true));
    browser.screenshot("console-run.png").await;

    std::fs::write(&last_gate, "").expect("open the last gate");
    // When the run ends the page reloads with the answer and the commit message, as text.
    browser
        .until("return document.querySelector('.answer') !== null")
        .await;
    let shown = browser
        .eval("return document.querySelector('pre.message').textContent.split('\\n')[0]")
        .await;
    assert_eq!(shown, json!(format!("Promote 2.0 {HOSTILE}")));
    assert_eq!(browser.eval(harmless).await, json!(true));
    browser.quit().await;
    server.stop().await;
}
