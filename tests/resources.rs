//! Every resource bounded (issue 22): what a test, a GitOps repository, a forge or a git
//! server sends is read up to a bound, so none of them can grow the server's memory without
//! limit. The server runs in this process: its growth is this process's
//! ([`MemoryWatch`]), measured against a margin for the runtime's own growth (the tests of the
//! `isolated` binary run one at a time).

use crate::support::{git_server::GitServer, memory::MemoryWatch, *};
use phasegate::{config::Config, git::local};
use std::path::Path;

/// Most the process may grow while the server reads 64 MiB it must not keep, in MiB: what
/// the server keeps is a few MiB; unbounded, each of these grew it by 130 MiB or more.
const MARGIN_MIB: u64 = 40;

/// The tests' configuration, with `user` and `password` (in files under `root`) for the
/// repositories of a [`GitServer`] on plain http.
fn over_http(root: &Path, user: &str, password: &str) -> Config {
    let (user_file, password_file) = (root.join("username"), root.join("password"));
    std::fs::write(&user_file, user).expect("write");
    std::fs::write(&password_file, password).expect("write");
    let mut config = test_config();
    config.git.allow_insecure_http = true;
    config.git.username_file = Some(user_file);
    config.git.password_file = Some(password_file);
    config
}

/// Execute's answer to a command test `script` (run by `sh -c`), and how much the process grew
/// meanwhile (MiB).
async fn command_test(script: &str) -> (serde_json::Value, u64) {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let command = serde_json::to_string(&["sh", "-c", script]).expect("json");
    let spec = petstore(
        &file_url(&bare),
        &[("test", "command"), ("testCommand", &command)],
    );
    let server = TestServer::start(test_config()).await;
    let mut params = sync_event(&synced);
    params.push(phasegate::sensor::Parameter {
        dest: "test.target".into(),
        value: serde_json::json!(PETSTORE_TEST),
    });
    let memory = MemoryWatch::start();
    let answer = match server.sensor().await.fire(&spec, &params, FROM_TEST).await {
        Ok(fired) => fired.response,
        Err(failed) => (failed.response.clone())
            .unwrap_or_else(|| panic!("no answer: {}", failed.status.message())),
    };
    (answer, memory.growth_mib())
}

/// 64 MiB of `x` without a newline, then `end` on a line of its own.
fn huge_line_then(end: &str) -> String {
    format!("head -c 67108864 /dev/zero | tr '\\0' x; echo; echo {end}")
}

#[tokio::test]
async fn a_test_printing_a_huge_line_is_decided_by_its_exit_code_and_its_line_is_cut() {
    let _alone = crate::support::memory::alone().await;
    let (answer, grown) = command_test(&huge_line_then("done")).await;
    assert!(grown < MARGIN_MIB, "the server grew by {grown} MiB");
    let log = answer["test"]["log"].as_str().unwrap_or_default();
    assert_eq!(answer["outcome"], "promoted", "{log}");
    assert!(log.contains("… [cut: 67092480 bytes]\ndone\n"), "{log}");

    let (answer, grown) = command_test(&format!("{}; exit 3", huge_line_then("broken"))).await;
    assert!(grown < MARGIN_MIB, "the server grew by {grown} MiB");
    let log = answer["test"]["log"].as_str().unwrap_or_default();
    assert_eq!(answer["test"]["passed"], false, "{log}");
    assert!(
        log.contains("broken") && log.contains("exit status: 3"),
        "{log}"
    );
}

#[tokio::test]
async fn a_test_printing_bytes_that_are_not_utf8_keeps_its_output_and_exit_code() {
    let _alone = crate::support::memory::alone().await;
    let script = "printf 'before \\377\\376 after\\n'; sleep 0.2; echo still here; exit 0";
    let (answer, _) = command_test(script).await;
    let log = answer["test"]["log"].as_str().unwrap_or_default();
    assert_eq!(answer["outcome"], "promoted", "{log}");
    assert!(log.contains("before \u{FFFD}\u{FFFD} after"), "{log}");
    assert!(log.contains("still here"), "{log}");

    let (answer, _) = command_test("printf '\\377\\n'; sleep 0.2; echo last words; exit 4").await;
    let log = answer["test"]["log"].as_str().unwrap_or_default();
    assert_eq!(answer["test"]["passed"], false, "{log}");
    assert!(
        log.contains("last words") && log.contains("exit status: 4"),
        "{log}"
    );
}

#[tokio::test]
async fn a_huge_values_file_is_refused_by_a_promotion_and_the_board_before_it_is_read() {
    let _alone = crate::support::memory::alone().await;
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    // Over smart HTTP, as from a forge: git's local transport (file://) inflates every object
    // it sends, in this process.
    let git = GitServer::start(&root, "bot", "git-password").await;
    let server = TestServer::start(over_http(&root, "bot", "git-password")).await;
    let spec = petstore(&git.url("gitops"), &[("test", "none")]);
    let sensor = server.sensor().await;
    sensor
        .fire(&spec, &sync_event(&synced), FROM_TEST)
        .await
        .expect("promotes");
    // Someone commits 64 MiB of spaces into prod's values file: 64 KiB once compressed.
    let prod = values_path("petstore", "prod");
    let huge = format!("{}{}", values("2.0"), " ".repeat(64 << 20));
    local::commit_files(&bare, "main", &[(&prod, &huge)], "oops").expect("commit");
    drop(huge);
    let synced = bump(&bare, &["petstore"], "test", "3.0");

    let memory = MemoryWatch::start();
    let failed = sensor
        .fire(&spec, &sync_event(&synced), FROM_TEST)
        .await
        .expect_err("a huge values file");
    let board = reqwest::get(server.console_url())
        .await
        .expect("board")
        .text()
        .await
        .expect("board page");
    let grown = memory.growth_mib();

    assert!(grown < MARGIN_MIB, "the server grew by {grown} MiB");
    assert_eq!(failed.status.code(), tonic::Code::InvalidArgument);
    let message = failed.status.message();
    assert!(
        message.contains(&prod) && message.contains("more than the 1048576 bytes (1 MiB)"),
        "{message}"
    );
    let prod_phase = board.find(">prod<").expect("prod phase");
    let version = board[prod_phase..].split("class=\"version\">").nth(1);
    assert!(
        !version.is_some_and(|v| v.starts_with("2.0")),
        "the board shows no version for a file it did not read:\n{board}"
    );
    assert!(board.contains(">test<"), "{board}");
}

#[tokio::test]
async fn a_forge_answering_more_than_the_bound_is_refused_without_holding_the_answer() {
    let _alone = crate::support::memory::alone().await;
    use crate::support::{fake_forge::Fronted, fake_github::FakeGitHub, forge_bed::ForgeBed};
    let bed = ForgeBed::<FakeGitHub>::start().await;
    // A first pull request: the fake GitHub loads its API description once, 90 MiB.
    let opened = bed.fire(&bed.pr_spec(&[]), &bed.synced).await;
    assert_eq!(opened.expect("opens")["outcome"], "pr-opened");
    let synced = bump(&bed.bare, &["petstore"], "test", "3.0");
    bed.forge
        .with_front(|front| front.answer_huge("GET", "/pulls", 64 << 20));

    let memory = MemoryWatch::start();
    let refused = bed.fire(&bed.pr_spec(&[]), &synced).await;
    let grown = memory.growth_mib();

    assert!(grown < MARGIN_MIB, "the server grew by {grown} MiB");
    let status = refused.expect_err("a 64 MiB answer");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert!(
        status
            .message()
            .contains("GitHub: GET repos/org/gitops/pulls")
            && status
                .message()
                .contains("larger than 4194304 bytes (4 MiB)"),
        "{status:?}"
    );
    assert_eq!(bed.forge.pulls().len(), 1, "no second pull request");
}

#[tokio::test]
async fn a_fetch_receiving_more_than_git_max_fetch_bytes_is_cancelled() {
    let _alone = crate::support::memory::alone().await;
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    gitops_repo(&bare, &["petstore"]);
    // 512 KiB that do not compress much (hex of a pseudo-random sequence): about 256 KiB in a
    // pack, beside the values files.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: String = (0..64 * 1024)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            format!("{:08x}", x >> 32)
        })
        .collect();
    local::commit_files(&bare, "main", &[("assets/noise.txt", &noise)], "assets").expect("commit");
    let synced = bump(&bare, &["petstore"], "test", "3.0");
    let git = GitServer::start(&root, "bot", "git-password").await;

    let grown = refused_over_the_fetch_bound(&root, &git, &synced, 64 * 1024).await;

    assert!(grown < MARGIN_MIB, "the server grew by {grown} MiB");
    assert_eq!(version_of(&bare, "petstore", "prod"), "1.0");
}

/// Fires a promotion of `synced` from `git`'s `gitops` repository at a server whose
/// `git.maxFetchBytes` is `bound`; checks it is refused naming the remote and the bound, and
/// answers how much the process grew meanwhile (MiB).
async fn refused_over_the_fetch_bound(
    root: &Path,
    git: &GitServer,
    synced: &str,
    bound: u64,
) -> u64 {
    let mut config = over_http(root, "bot", "git-password");
    config.git.max_fetch_bytes = bound;
    let server = TestServer::start(config).await;

    let memory = MemoryWatch::start();
    let failed = server
        .sensor()
        .await
        .fire(
            &petstore(&git.url("gitops"), &[("test", "none")]),
            &sync_event(synced),
            FROM_TEST,
        )
        .await
        .expect_err("a fetch over the bound");
    let grown = memory.growth_mib();

    assert_eq!(failed.status.code(), tonic::Code::FailedPrecondition);
    let message = failed.status.message();
    assert!(
        message.contains(&git.url("gitops"))
            && message.contains(&format!(
                "more than git.maxFetchBytes ({bound} bytes) allows"
            )),
        "{message}"
    );
    grown
}

/// A pkt-line of git's protocol: its length in four hex digits, then `payload`.
fn pkt(payload: &str) -> String {
    format!("{:04x}{payload}", payload.len() + 4)
}

/// A git server (or whatever answers at its URL) advertising refs without end: libgit2 keeps
/// every advertised ref in memory and its pack bound never sees them, so the transport counts
/// them against `git.maxFetchBytes`.
#[tokio::test]
async fn a_remote_advertising_refs_without_end_is_cut_at_git_max_fetch_bytes() {
    let _alone = crate::support::memory::alone().await;
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let endless = axum::Router::new().route(
        "/gitops.git/info/refs",
        axum::routing::get(|| async {
            let oid = "1".repeat(40);
            let head = format!(
                "{}0000{}",
                pkt("# service=git-upload-pack\n"),
                pkt(&format!("{oid} HEAD\0multi_ack side-band-64k ofs-delta\n"))
            );
            // 64 MiB of refs, 64 KiB a chunk.
            let chunks = (0..1024u32).map(move |c| {
                let refs: String = (0..640)
                    .map(|i| pkt(&format!("{oid} refs/heads/r{c}-{i:04}\n")))
                    .collect();
                Ok::<_, std::io::Error>(refs)
            });
            let body = std::iter::once(Ok(head)).chain(chunks);
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "application/x-git-upload-pack-advertisement",
                )],
                axum::body::Body::from_stream(futures_util::stream::iter(body)),
            )
        }),
    );
    let git = GitServer::start_with_api(&root, "bot", "git-password", Some(endless)).await;

    let grown = refused_over_the_fetch_bound(&root, &git, &synced, 1 << 20).await;

    assert!(grown < MARGIN_MIB, "the server grew by {grown} MiB");
    assert_eq!(version_of(&bare, "petstore", "prod"), "1.0");
}
