//! The web console in a real headless Chromium (Debian's `chromium` and `chromium-driver`,
//! installed by .ci/test.sh), driven over WebDriver: the board shows the versions in each phase
//! after a promotion; a person finds an app among several repositories with the board's and the
//! runs list's filters (kept in the URL), sees the version that failed and why, on a desktop and
//! at a phone's 390 px; a run page shows test output appearing while the test runs; hostile
//! test output and commit messages are shown as text and never run.
//! `PHASEGATE_SCREENSHOTS=docs cargo test --test integration browser::` refreshes the README's
//! screenshots (taken of the fleet of [`fleet`], realistic data).

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

    /// The WebDriver id of the first element matching `css`.
    async fn element(&self, css: &str) -> String {
        let found = self
            .call(
                reqwest::Method::POST,
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        found["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string()
    }

    /// Clicks the first element matching `css` as a person does (at its centre).
    async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            json!({}),
        )
        .await;
    }

    /// Types `text` into the first element matching `css`, after clearing it.
    async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            json!({}),
        )
        .await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            json!({"text": text}),
        )
        .await;
    }

    /// Resizes the window (the viewport is a little smaller: the window's frame).
    async fn resize(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            json!({"width": width, "height": height}),
        )
        .await;
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

/// Apps of the fleet's two repositories.
const GITOPS_APPS: [&str; 5] = ["billing", "cart", "orders", "petstore", "search"];
const PLATFORM_APPS: [&str; 2] = ["auth", "gateway"];

/// A test campaign's output as a TAP runner writes it, failing its second case on stderr.
const FAILING_CAMPAIGN: &str = "echo '1..3'; echo 'ok 1 - GET /invoices answers 200'; \
     echo 'not ok 2 - POST /invoices stores the invoice: got 500' >&2; \
     echo 'ok 3 - GET /healthz answers 200'; exit 1";

/// A server that ran a small fleet, as a team has it: two repositories, each app promoted
/// from test to prod, billing's 2.0 failed its tests, and petstore's last run used a mistyped
/// key (an error before any version was read). Returns the server and the repositories.
async fn fleet(root: &std::path::Path) -> (TestServer, String, String) {
    let gitops = root.join("gitops.git");
    let platform = root.join("platform.git");
    let synced = gitops_repo(&gitops, &GITOPS_APPS);
    let synced_platform = gitops_repo(&platform, &PLATFORM_APPS);
    let server = TestServer::start(test_config()).await;
    let sensor = server.sensor().await;
    let app_spec = |bare: &std::path::Path, app: &str, extra: &[(&str, &str)]| {
        let path = PATH.replace("{app}", app);
        let mut s = spec(&[
            ("repo", &file_url(bare)),
            ("path", &path),
            ("phases", "test,prod"),
        ]);
        s.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        s
    };
    for app in PLATFORM_APPS {
        let s = app_spec(&platform, app, &[("test", "none")]);
        sensor
            .fire(&s, &sync_event(&synced_platform), FROM_TEST)
            .await
            .expect("promotes");
    }
    for app in GITOPS_APPS {
        let s = if app == "billing" {
            let command = serde_json::to_string(&["sh", "-c", FAILING_CAMPAIGN]).expect("json");
            app_spec(
                &gitops,
                app,
                &[("test", "command"), ("testCommand", &command)],
            )
        } else {
            app_spec(&gitops, app, &[("test", "none")])
        };
        let fired = sensor.fire(&s, &sync_event(&synced), FROM_TEST).await;
        assert_eq!(fired.is_ok(), app != "billing", "{app}");
    }
    let mistyped = app_spec(
        &gitops,
        "petstore",
        &[("test", "none"), ("key", "image.verison")],
    );
    sensor
        .fire(&mistyped, &sync_event(&synced), FROM_TEST)
        .await
        .expect_err("no such key");
    (server, file_url(&gitops), file_url(&platform))
}

/// The board's rows as `app: phase=version …`, in order.
const BOARD_ROWS: &str = "return [...document.querySelectorAll('.pipeline')].map(r => \
     r.querySelector('.app .name').textContent + ':' + [...r.querySelectorAll('.phase')].map(p => \
     p.querySelector('.name').textContent + '=' + \
     (p.querySelector('.version') || p.querySelector('.missing')).textContent).join(' '))";

#[tokio::test]
async fn the_board_finds_an_app_by_filter_kept_in_the_url_and_survives_a_bad_run() {
    let (_dir, root) = tempdir();
    let (server, gitops, _) = fleet(&root).await;
    let browser = Browser::start().await;
    browser.open(&server.console_url()).await;
    // Named by app, by repository then app: the failed and the broken pipelines do not jump
    // to the top, and petstore's mistyped key blanks nothing.
    assert_eq!(
        browser.eval(BOARD_ROWS).await,
        json!([
            "billing:test=2.0 prod=1.0",
            "cart:test=2.0 prod=2.0",
            "orders:test=2.0 prod=2.0",
            "petstore:test=2.0 prod=2.0",
            "search:test=2.0 prod=2.0",
            "auth:test=2.0 prod=2.0",
            "gateway:test=2.0 prod=2.0",
        ])
    );
    // Each repository is shown once, above its apps.
    let repos = browser
        .eval("return [...document.querySelectorAll('h2.repo')].map(h => h.textContent)")
        .await;
    assert_eq!(repos.as_array().map(Vec::len), Some(2), "{repos}");
    // The failed transition names the version that failed; the broken one says it erred,
    // and why on hover.
    let transition = |app: &str, part: &str| {
        format!(
            "const r = [...document.querySelectorAll('.pipeline')].find(r => \
             r.querySelector('.app .name').textContent === '{app}'); \
             const t = r.querySelector('.transition'); \
             return {part}"
        )
    };
    assert_eq!(
        browser
            .eval(&transition(
                "billing",
                "[t.querySelector('.outcome').textContent, t.querySelector('.tried').textContent]"
            ))
            .await,
        json!(["tests-failed", "1.0 → 2.0"])
    );
    assert_eq!(
        browser
            .eval(&transition(
                "petstore",
                "t.querySelector('.outcome').textContent"
            ))
            .await,
        json!("error")
    );
    let why = browser.eval(&transition("petstore", "t.title")).await;
    assert!(
        why.as_str().is_some_and(|w| w.contains("image.verison")),
        "{why}"
    );
    browser.screenshot("console-board.png").await;

    // A person types part of an app's name and submits: one row, and the URL keeps it.
    browser.type_into("input[name=q]", "bill").await;
    browser.click(".filters button").await;
    browser
        .until("return location.search.includes('q=bill') && document.querySelectorAll('.pipeline').length === 1")
        .await;
    assert_eq!(
        browser.eval(BOARD_ROWS).await,
        json!(["billing:test=2.0 prod=1.0"])
    );
    assert_eq!(
        browser
            .eval("return document.querySelector('input[name=q]').value")
            .await,
        json!("bill")
    );
    // The same URL, opened anew (a link shared, no script involved), shows the same.
    let url = browser.eval("return location.href").await;
    browser.open(url.as_str().expect("url")).await;
    assert_eq!(
        browser.eval(BOARD_ROWS).await,
        json!(["billing:test=2.0 prod=1.0"])
    );
    // The repository select narrows to one repository's group.
    let only = format!("{}/?repo={}", server.console_url(), urlencode(&gitops));
    browser.open(&only).await;
    let rows = browser.eval(BOARD_ROWS).await;
    assert_eq!(rows.as_array().map(Vec::len), Some(5), "{rows}");
    // Two clicks from the board to the run that failed and the version it tested.
    browser
        .open(&format!("{}/?q=billing", server.console_url()))
        .await;
    browser.click(".transition.fail").await;
    browser
        .until("return location.pathname.startsWith('/runs/')")
        .await;
    let headline = browser
        .eval("return document.querySelector('.headline').innerText.replace(/\\s+/g, ' ')")
        .await;
    assert_eq!(
        headline,
        json!("tests-failed billing test → prod 1.0 → 2.0")
    );
    browser.quit().await;
    server.stop().await;
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn the_runs_list_finds_a_failed_run_and_its_version_on_a_desktop_and_a_phone() {
    let (_dir, root) = tempdir();
    let (server, _, _) = fleet(&root).await;
    let browser = Browser::start().await;
    browser
        .open(&format!("{}/runs", server.console_url()))
        .await;
    let total = "return document.querySelector('.total').textContent";
    let rows = browser
        .eval("return document.querySelectorAll('.runs .run').length")
        .await;
    assert!(
        rows.as_u64().is_some_and(|n| n >= 8),
        "every run of the fleet: {rows}"
    );
    assert_eq!(
        browser.eval(total).await,
        json!(format!("Runs 1–{rows} of {rows}"))
    );
    // Filter by app and by version, through the form: the URL keeps both.
    browser.type_into("input[name=q]", "billing").await;
    browser.click(".filters .more summary").await;
    browser.type_into("input[name=version]", "2.0").await;
    browser.click(".filters button").await;
    browser
        .until("return location.search.includes('q=billing') && location.search.includes('version=2.0')")
        .await;
    assert_eq!(browser.eval(total).await, json!("Runs 1–1 of 1 matching"));
    let row = "return document.querySelector('.runs .run').innerText.replace(/\\s+/g, ' ')";
    let shown = browser.eval(row).await;
    let shown = shown.as_str().expect("a row");
    assert!(
        shown.starts_with("tests-failed billing test → prod 1.0 → 2.0"),
        "{shown}"
    );
    // Beside the outcome: ApplyPolicy's line, the last line the test wrote.
    assert!(
        shown.contains("tests of test failed, nothing promoted to prod: "),
        "{shown}"
    );
    // The time is relative, the moment on hover.
    let time = browser
        .eval("const t = document.querySelector('.runs time'); return [t.textContent, t.title]")
        .await;
    assert!(
        time[0]
            .as_str()
            .is_some_and(|t| t.ends_with("ago") || t == "just now"),
        "{time}"
    );
    assert!(time[1].as_str().is_some_and(|t| t.ends_with('Z')), "{time}");
    // The whole row links: a click on its repository text opens the run.
    browser.click(".runs .run .where").await;
    browser
        .until("return location.pathname.startsWith('/runs/')")
        .await;
    let facts = browser
        .eval("return document.querySelector('.facts').innerText")
        .await;
    let facts = facts.as_str().expect("facts");
    assert!(
        facts.contains("apps/billing/prod/values-prod.yaml"),
        "the file: {facts}"
    );
    assert!(!facts.contains("Promotion commit"), "no empty box: {facts}");
    let reason = browser
        .eval("return document.querySelector('p.reason').textContent")
        .await;
    assert!(
        reason
            .as_str()
            .is_some_and(|r| r.starts_with("tests of test failed")),
        "{reason}"
    );
    let timeline = browser
        .eval("return [...document.querySelectorAll('.timeline li .name')].map(l => l.textContent)")
        .await;
    let stages = timeline.as_array().expect("a list");
    assert!(
        stages.contains(&json!("testing")) && stages.last() == Some(&json!("done")),
        "{timeline}"
    );
    browser.screenshot("console-run.png").await;

    // On a phone: the outcome, app, time and version of each row are in view, nothing
    // scrolls sideways.
    browser.resize(390, 844).await;
    browser
        .open(&format!("{}/runs", server.console_url()))
        .await;
    browser.until("return window.innerWidth <= 390").await;
    let fits = "const w = window.innerWidth; \
         if (document.documentElement.scrollWidth > w) return 'scrolls: ' + document.documentElement.scrollWidth; \
         for (const row of document.querySelectorAll('.runs .run')) { \
           for (const key of ['.badge', '.app', 'time', '.version', '.step']) { \
             const e = row.querySelector(key); const r = e.getBoundingClientRect(); \
             if (r.width === 0 || r.left < 0 || r.right > w) return key + ' out of view in ' + row.innerText; } } \
         return true";
    assert_eq!(browser.eval(fits).await, json!(true));
    browser.screenshot("console-runs-phone.png").await;
    browser.open(&server.console_url()).await;
    assert_eq!(
        browser
            .eval(fits.replace(".runs .run", ".nothing").as_str())
            .await,
        json!(true)
    );
    let board = browser.eval(BOARD_ROWS).await;
    assert_eq!(board.as_array().map(Vec::len), Some(7), "{board}");
    browser.screenshot("console-board-phone.png").await;
    browser.quit().await;
    server.stop().await;
}
