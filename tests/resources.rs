//! Every resource bounded (issue 22): what a test, a GitOps repository, a forge or a git
//! server sends is read up to a bound, so none of them can grow the server's memory without
//! limit. The server runs in this process: its growth is this process's
//! ([`MemoryWatch`]), measured against a margin that leaves room for tests running alongside.

use crate::support::{memory::MemoryWatch, *};

/// Most the process may grow while the server reads 64 MiB it must not keep, in MiB: what
/// the server keeps is a few MiB; unbounded, each of these grew it by 130 MiB or more.
const MARGIN_MIB: u64 = 40;

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
