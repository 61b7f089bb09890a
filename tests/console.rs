//! The web console over HTTP, as a browser fetches it: the phase board after a promotion, the
//! runs list with filters, a run's page (edit, commit link, answer), its live output as
//! server-sent events, escaping of hostile text, and the security headers of every answer.
//! (tests/browser.rs drives a real Chromium over the same pages.)

use crate::support::{self, *};
use phasegate::config::Config;

const HOSTILE: &str =
    r#"<script>window.canary=1</script>"><img src=x onerror="document.title='pwned'">"#;

async fn get(url: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let r = reqwest::get(url).await.expect("console answers");
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, headers, r.text().await.expect("body"))
}

#[tokio::test]
async fn the_board_shows_the_version_in_each_phase_and_the_last_promotion() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let server = TestServer::start(Config {
        console_commit_link: Some("https://git.example/{repo}/commit/{commit}".into()),
        ..test_config()
    })
    .await;
    let (status, _, board) = get(&server.console_url()).await;
    assert_eq!(status, 200);
    assert!(board.contains("No promotion has run yet"), "{board}");

    let spec = petstore(&file_url(&bare), &[("test", "none")]);
    let promoted = server
        .sensor()
        .await
        .fire(&spec, &sync_event(&synced), FROM_TEST)
        .await
        .expect("promotes");
    let run = promoted.response["run"].as_str().expect("run").to_string();
    let commit = promoted.response["commit"]
        .as_str()
        .expect("commit")
        .to_string();

    let (_, _, board) = get(&server.console_url()).await;
    let test = board.find(">test<").expect("test phase");
    let prod = board.find(">prod<").expect("prod phase");
    assert!(test < prod, "phases in promotion order:\n{board}");
    let version_after = |at: usize| {
        board[at..]
            .split("class=\"version\">")
            .nth(1)
            .map(|v| &v[..3])
    };
    assert_eq!(version_after(test), Some("2.0"), "{board}");
    assert_eq!(version_after(prod), Some("2.0"), "{board}");
    assert!(board.contains(&format!("href=\"/runs/{run}\"")), "{board}");
    assert!(board[test..prod].contains("promoted"), "{board}");

    let (status, _, page) = get(&format!("{}/runs/{run}", server.console_url())).await;
    assert_eq!(status, 200);
    assert!(
        page.contains(r#"<code>  version: &#34;1.0&#34;  # bumped by CD</code>"#),
        "{page}"
    );
    assert!(
        page.contains(r#"<code>  version: &#34;2.0&#34;  # bumped by CD</code>"#),
        "{page}"
    );
    let bare_path = bare.display().to_string();
    let link = format!(
        "https://git.example/{}/commit/{commit}",
        bare_path.trim_matches('/').trim_end_matches(".git")
    );
    assert!(page.contains(&format!("href=\"{link}\"")), "{page}");
    assert!(
        page.contains("&#34;outcome&#34;: &#34;promoted&#34;"),
        "the answer JSON:\n{page}"
    );
    assert!(
        !page.contains("data-events"),
        "a finished run is not followed live"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_runs_list_filters_and_pages_and_unknown_runs_are_not_found() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let server = TestServer::start(test_config()).await;
    let sensor = server.sensor().await;
    let failing = petstore(
        &file_url(&bare),
        &[("test", "command"), ("testCommand", "false")],
    );
    sensor
        .fire(&failing, &sync_event(&synced), FROM_TEST)
        .await
        .expect_err("fails");
    let passing = petstore(&file_url(&bare), &[("test", "none")]);
    sensor
        .fire(&passing, &sync_event(&synced), FROM_TEST)
        .await
        .expect("promotes");

    let list = |q: &str| get_text(format!("{}/runs{q}", server.console_url()));
    let all = list("").await;
    assert_eq!(
        all.matches("<a class=\"run\" href=\"/runs/").count(),
        2,
        "{all}"
    );
    let failed = list("?outcome=tests-failed").await;
    assert_eq!(
        failed.matches("<a class=\"run\" href=\"/runs/").count(),
        1,
        "{failed}"
    );
    assert!(failed.contains(">tests-failed</span>"), "{failed}");
    assert!(
        failed.contains("<option selected>tests-failed</option>"),
        "{failed}"
    );
    let none = list("?phase=staging").await;
    assert!(none.contains("No runs match."), "{none}");
    let page_two = list("?page=2").await;
    assert!(
        page_two.contains("No runs match.") && page_two.contains("← newer"),
        "{page_two}"
    );

    let (status, _, missing) = get(&format!("{}/runs/nope", server.console_url())).await;
    assert_eq!(status, 404);
    assert!(missing.contains("No run nope"), "{missing}");
    server.stop().await;
}

#[tokio::test]
async fn a_pull_request_run_page_links_the_pull_request_next_to_its_commit() {
    let (_dir, root) = tempdir();
    let bare = root.join("org/gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let github = support::fake_github::FakeGitHub::start(&root, "bot", "ghp-console-token").await;
    let (user_file, password_file) = (root.join("username"), root.join("password"));
    std::fs::write(&user_file, "bot").expect("write");
    std::fs::write(&password_file, "ghp-console-token").expect("write");
    let mut config = test_config();
    // The fake forge serves plain http on 127.0.0.1: the operator allows clear text.
    config.git.allow_insecure_http = true;
    config.git.username_file = Some(user_file);
    config.git.password_file = Some(password_file);
    let server = TestServer::start(config).await;
    let spec = petstore(
        &github.repo_url("gitops"),
        &[
            ("test", "none"),
            ("forge", "github"),
            ("promoteVia", "pull-request"),
        ],
    );
    let opened = server
        .sensor()
        .await
        .fire(&spec, &sync_event(&synced), FROM_TEST)
        .await
        .expect("opens a pull request");
    assert_eq!(
        opened.response["outcome"], "pr-opened",
        "{}",
        opened.response
    );
    let run = opened.response["run"].as_str().expect("run");
    let commit = opened.response["commit"].as_str().expect("commit");
    let url = github.pulls()[0]["html_url"]
        .as_str()
        .expect("html_url")
        .to_string();

    let page = get_text(format!("{}/runs/{run}", server.console_url())).await;
    let promotion = page.find("<dt>Promotion commit</dt>").expect("commit");
    let pull = page.find("<dt>Pull request</dt>").expect("pull request");
    assert!(promotion < pull, "next to the commit:\n{page}");
    assert!(page[promotion..pull].contains(commit), "{page}");
    assert!(
        page[pull..].starts_with(&format!(
            "<dt>Pull request</dt><dd><a href=\"{url}\">#1</a></dd>"
        )),
        "{page}"
    );
    let listed = get_text(format!("{}/runs?outcome=pr-opened", server.console_url())).await;
    assert!(
        listed.contains(&format!("href=\"/runs/{run}\"")),
        "{listed}"
    );
    assert!(
        !page.contains("ghp-console-token") && !listed.contains("ghp-console-token"),
        "no credential in a page"
    );

    // A forge answering a hostile link: shown as text, escaped, never a link.
    github.set_html_url(1, &format!("javascript:alert(1)//{HOSTILE}"));
    let v3 = bump(&bare, &["petstore"], "test", "3.0");
    let updated = server
        .sensor()
        .await
        .fire(&spec, &sync_event(&v3), FROM_TEST)
        .await
        .expect("updates the pull request");
    assert_eq!(
        updated.response["outcome"], "pr-updated",
        "{}",
        updated.response
    );
    let run = updated.response["run"].as_str().expect("run");
    let page = get_text(format!("{}/runs/{run}", server.console_url())).await;
    let pull = page.find("<dt>Pull request</dt>").expect("pull request");
    let cell = &page[pull..pull + page[pull..].find("</dd>").expect("cell")];
    assert!(
        cell.contains("#1 javascript:alert(1)//&#60;script&#62;window.canary=1"),
        "{cell}"
    );
    assert!(!cell.contains("<a"), "not a link: {cell}");
    assert!(
        !page.contains("<script>window") && !page.contains("<img"),
        "{page}"
    );
    server.stop().await;
}

pub(crate) async fn get_text(url: String) -> String {
    get(&url).await.2
}

#[tokio::test]
async fn every_answer_carries_a_strict_content_security_policy_and_no_inline_script() {
    let server = TestServer::start(test_config()).await;
    for path in [
        "/",
        "/runs",
        "/runs/nope",
        "/static/console.js",
        "/static/console.css",
    ] {
        let (_, headers, body) = get(&format!("{}{path}", server.console_url())).await;
        let csp = headers["content-security-policy"].to_str().expect("ascii");
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        if path.ends_with(".js") || path.ends_with(".css") {
            continue;
        }
        assert!(
            !body.contains("<script>") && !body.contains("style="),
            "{path}: {body}"
        );
        assert!(
            body.contains(r#"<meta name="viewport""#),
            "usable on a phone"
        );
    }
    let r = reqwest::Client::new()
        .post(format!("{}/runs", server.console_url()))
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status().as_u16(), 405, "read-only");
    server.stop().await;
}

/// The status line of a GET of the board sent with `host` as its `Host` header (none: an
/// HTTP/1.0 request without one).
async fn status_for_host(server: &TestServer, host: Option<&str>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = server.console_url().replace("http://", "");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = match host {
        Some(host) => format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        None => "GET / HTTP/1.0\r\n\r\n".to_string(),
    };
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let answer = String::from_utf8_lossy(&answer);
    answer.lines().next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn the_console_answers_only_on_its_own_host_names() {
    let server = TestServer::start(Config {
        console_hosts: vec!["phasegate.example.com".into()],
        ..test_config()
    })
    .await;
    for host in [
        "localhost:8080",
        "127.0.0.1:9",
        "[::1]:8080",
        "LOCALHOST",
        "phasegate.example.com",
    ] {
        let status = status_for_host(&server, Some(host)).await;
        assert!(status.contains(" 200 "), "{host}: {status}");
    }
    // A rebound DNS name (evil.example → 127.0.0.1) and a request without a Host.
    for host in [
        Some("evil.example:8080"),
        Some("localhost.evil.example"),
        None,
    ] {
        let status = status_for_host(&server, host).await;
        assert!(status.contains(" 421 "), "{host:?}: {status}");
    }
    server.stop().await;
}

#[tokio::test]
async fn hostile_output_and_commit_messages_are_escaped_and_the_live_output_starts_with_the_lines_so_far()
 {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let gate = root.join("gate");
    let script = format!(
        "echo '{}'; while [ ! -e {} ]; do sleep 0.05; done; echo after the gate",
        HOSTILE.replace('\'', r"'\''"),
        gate.display()
    );
    let command = serde_json::to_string(&["sh", "-c", &script]).expect("json");
    let server = TestServer::start(test_config()).await;
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
    let accepted = server
        .sensor()
        .await
        .fire(&spec, &sync_event(&synced), FROM_TEST)
        .await
        .expect("accepted");
    let id = accepted.response["run"].as_str().expect("run").to_string();
    let page_url = format!("{}/runs/{id}", server.console_url());
    // The page of the running run shows the output so far and where to follow it.
    let mut page = String::new();
    for _ in 0..500 {
        page = get_text(page_url.clone()).await;
        if page.contains("canary") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        page.contains("&#60;script&#62;window.canary=1&#60;/script&#62;"),
        "{page}"
    );
    assert!(!page.contains("<script>window"), "{page}");
    assert!(!page.contains("<img"), "{page}");
    let events = page
        .split("data-events=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("live")
        .to_string();
    assert_eq!(events, format!("/runs/{id}/events?from=1"));

    // The events from line 0: the line so far, then the rest and the end, as a browser gets them.
    let stream = reqwest::get(format!("{}/runs/{id}/events?from=0", server.console_url()))
        .await
        .expect("sse");
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    std::fs::write(&gate, "").expect("open the gate");
    let body = stream.text().await.expect("the stream ends with the run");
    let first = body.find("canary").expect("the line so far");
    let later = body.find("after the gate").expect("the live line");
    let end = body.find("event: end\ndata: promoted").expect("the end");
    assert!(first < later && later < end, "{body}");

    let page = get_text(page_url).await;
    assert!(
        page.contains("Promote 2.0 &#60;script&#62;"),
        "the commit message, escaped:\n{page}"
    );
    assert!(
        !page.contains("<script>window") && !page.contains("<img"),
        "{page}"
    );
    server.stop().await;
}

/// Issue 27: "which version failed?" is the first question after a red card. The version under
/// test is read before the test starts: the run page and the list show it while the test
/// runs, and Execute's tests-failed answer, the list and the page after it.
#[tokio::test]
async fn a_failing_run_names_the_version_it_tested_while_running_and_after() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let server = TestServer::start(test_config()).await;
    let go = root.join("go");
    let script = format!(
        "while [ ! -e {} ]; do sleep 0.05; done; exit 1",
        go.display()
    );
    let command = serde_json::json!(["sh", "-c", script]).to_string();
    let spec = petstore(
        &file_url(&bare),
        &[("test", "command"), ("testCommand", &command)],
    );
    let sensor = server.sensor().await;
    let firing = {
        let (sensor, spec) = (sensor.clone(), spec.clone());
        tokio::spawn(async move { sensor.fire(&spec, &sync_event(&synced), FROM_TEST).await })
    };
    let runs = format!("{}/runs", server.console_url());
    let list = || get(&runs);
    let mut running = String::new();
    for _ in 0..400 {
        running = list().await.2;
        if running.contains(">testing</span>") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(running.contains(">testing</span>"), "{running}");
    assert!(
        running.contains("<span class=\"version\">1.0 → 2.0</span>"),
        "while testing: {running}"
    );

    std::fs::write(&go, "").expect("let the test end");
    let failed = firing.await.expect("joins").expect_err("the test fails");
    let answer = failed.response.expect("Execute's answer");
    assert_eq!(answer["outcome"], "tests-failed");
    assert_eq!(
        (&answer["version"], &answer["previous"]),
        (&"2.0".into(), &"1.0".into())
    );
    let run = answer["run"].as_str().expect("run");
    let listed = list().await.2;
    assert!(
        listed.contains(">tests-failed</span>")
            && listed.contains("<span class=\"version\">1.0 → 2.0</span>"),
        "{listed}"
    );
    let (_, _, page) = get(&format!("{}/runs/{run}", server.console_url())).await;
    assert!(page.contains("1.0 → 2.0"), "{page}");
    assert_eq!(version_of(&bare, "petstore", "prod"), "1.0");
    server.stop().await;
}

#[tokio::test]
async fn an_error_after_reading_the_source_names_the_version_in_the_answer_and_the_console() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let server = TestServer::start(test_config()).await;
    // An Argo CD gate on a server without Kubernetes: an error, after the version was read.
    let spec = petstore(
        &file_url(&bare),
        &[
            ("test", "command"),
            ("testCommand", r#"["true"]"#),
            ("argocdApp", "petstore-test"),
        ],
    );
    let failed = server
        .sensor()
        .await
        .fire(&spec, &sync_event(&synced), FROM_TEST)
        .await
        .expect_err("the command cannot run");
    assert_eq!(failed.step, "Execute");
    let message = failed.status.message();
    assert!(
        message.ends_with("(version under test 2.0, prod at 1.0)"),
        "{message}"
    );
    let listed = get_text(format!("{}/runs?outcome=error", server.console_url())).await;
    assert!(
        listed.contains("<span class=\"version\">1.0 → 2.0</span>")
            && listed.contains("version under test 2.0, prod at 1.0"),
        "the list shows the version and the reason: {listed}"
    );
    server.stop().await;
}

#[tokio::test]
async fn filters_are_bounded_and_shown_back_as_text() {
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
    let hostile = r#""><script>window.canary=1</script>"#;
    let long = "p".repeat(5_000);
    for path in ["/", "/runs"] {
        for q in [hostile, long.as_str()] {
            let encoded: String = url::form_urlencoded::byte_serialize(q.as_bytes()).collect();
            let (status, _, page) = get(&format!(
                "{}{path}?q={encoded}&version={encoded}&page=99999999999",
                server.console_url()
            ))
            .await;
            assert_eq!(status, 200, "{path}");
            assert!(!page.contains("<script>window"), "{page}");
            assert!(
                !page.contains(&"p".repeat(201)),
                "cut to 200 characters: {path}"
            );
        }
        let (_, _, page) = get(&format!("{}{path}?q=PetStore", server.console_url())).await;
        assert!(page.contains("value=\"PetStore\""), "{page}");
        assert!(
            page.contains("href=\"/runs/"),
            "any case finds petstore: {page}"
        );
    }
    server.stop().await;
}
