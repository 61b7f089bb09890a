//! The command line: `promote` as a drop-in for the classic promote.py step, and `demo`.

mod support;

use std::process::{Command, Output};

use serde_json::Value;
use support::*;

fn phasegate(args: &[&str], cache: &std::path::Path) -> Output {
    phasegate_with(args, cache, &[])
}

fn phasegate_with(args: &[&str], cache: &std::path::Path, env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_phasegate"))
        .args(args)
        .env("PHASEGATE_CACHE_DIR", cache)
        .env_remove("GIT_USER")
        .env_remove("GIT_PASSWORD")
        .envs(env.iter().copied())
        .output()
        .expect("run phasegate")
}

/// `promote` of petstore from test to prod in the repository at `bare`, without the commit.
fn promote_args(bare: &std::path::Path) -> Vec<String> {
    let path = PATH.replace("{app}", "petstore");
    ["promote", "--git-repo", &file_url(bare), "--path", &path]
        .into_iter()
        .chain(["--source-phase", "test", "--target-phase", "prod"])
        .map(str::to_string)
        .collect()
}

#[test]
fn promote_exits_0_on_success_1_on_failed_tests_2_on_bad_input() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let cache = root.join("cache");
    let base = promote_args(&bare);
    let base: Vec<&str> = base.iter().map(String::as_str).collect();

    let failed = phasegate(
        &[
            &base[..],
            &[
                "--source-commit",
                &synced,
                "--test",
                "command",
                "--test-command",
                "sh -c 'echo campaign failed; exit 1'",
            ],
        ]
        .concat(),
        &cache,
    );
    assert_eq!(
        failed.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&failed.stderr)
    );
    let answer: Value = serde_json::from_slice(&failed.stdout).expect("JSON on stdout");
    assert_eq!(answer["outcome"], "tests-failed");
    assert!(
        answer["test"]["log"]
            .as_str()
            .expect("log")
            .contains("campaign failed")
    );
    assert_eq!(version_of(&bare, "petstore", "prod"), "1.0");

    let bad = phasegate(&[&base[..], &["--source-commit", "xyz"]].concat(), &cache);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("source.commit"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    let ok = phasegate(&[&base[..], &["--source-commit", &synced]].concat(), &cache);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let answer: Value = serde_json::from_slice(&ok.stdout).expect("JSON on stdout");
    assert_eq!(answer["outcome"], "promoted");
    assert_eq!(version_of(&bare, "petstore", "prod"), "2.0");
}

#[test]
fn promote_reads_its_configuration_from_phasegate_variables() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let repo = file_url(&bare);
    let cache = root.join("cache");
    let mut args = promote_args(&bare);
    args.extend(["--source-commit".to_string(), synced]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let refused = phasegate_with(
        &args,
        &cache,
        &[(
            "PHASEGATE_POLICY_REPOS",
            "https://git.example.com/*,ssh://git@git.example.com/*",
        )],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&repo), "names the refused repo: {stderr}");
    assert_eq!(version_of(&bare, "petstore", "prod"), "1.0");

    let promoted = phasegate_with(
        &args,
        &cache,
        &[
            ("PHASEGATE_POLICY_REPOS", "file:///**"),
            ("PHASEGATE_GIT_AUTHOR_NAME", "release-bot"),
        ],
    );
    assert_eq!(
        promoted.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&promoted.stderr)
    );
    let author = std::process::Command::new("git")
        .args(["log", "-1", "--format=%an", "main"])
        .current_dir(&bare)
        .output()
        .expect("git log");
    assert_eq!(
        String::from_utf8_lossy(&author.stdout).trim(),
        "release-bot"
    );
    assert!(
        std::fs::read_dir(&cache).is_ok_and(|mut d| d.next().is_some()),
        "the clone lives in PHASEGATE_CACHE_DIR"
    );
}

#[test]
fn demo_ends_with_a_commit_changing_only_prods_version_line() {
    let (_dir, root) = tempdir();
    let out = phasegate(&["demo"], &root);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "FetchResource",
        "Execute",
        "ApplyPolicy",
        "promotion commit",
    ] {
        assert!(text.contains(step), "{step} missing:\n{text}");
    }
    let changed: Vec<&str> = text
        .lines()
        .map(str::trim_start)
        .filter(|l| {
            (l.starts_with('+') || l.starts_with('-'))
                && !l.starts_with("+++")
                && !l.starts_with("---")
        })
        .collect();
    assert_eq!(changed.len(), 2, "{text}");
    assert!(changed[0].starts_with("-  version: \"1.0\""), "{changed:?}");
    assert!(changed[1].starts_with("+  version: \"2.0\""), "{changed:?}");
    assert!(
        text.contains("+++ b/apps/petstore/overlays/prod/values-prod.yaml"),
        "{text}"
    );
}
