//! Issue 25: a cold promotion fetches what it needs, not the history. A clone made from
//! nothing is shallow; every rule of docs/git.md holds on it, deepening only as far as a check
//! needs: a source commit deeper than the first fetch, a merge whose second parent holds the
//! newer promotion, a rollback older than the shallow boundary, a source commit off the branch,
//! and a server that never deepens.

use std::path::{Path, PathBuf};

use git2::{Oid, Repository, Signature, Time, build::TreeUpdateBuilder};

use crate::support::{engine::*, *};
use phasegate::{
    ErrorKind,
    git::{GitPromoter, PromotionOutcome, local},
};

/// Seconds since the epoch, now.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Ten days ago: older than any source commit here by far more than the clock-skew allowance.
fn long_ago() -> i64 {
    now() - 10 * 24 * 3600
}

/// Commits `files` onto `branch` at `time` (seconds), with `merged` as a second parent.
fn commit_at(
    bare: &Path,
    branch: &str,
    files: &[(String, String)],
    time: i64,
    merged: Option<Oid>,
) -> Oid {
    let repo = Repository::open_bare(bare).expect("repo");
    let refname = format!("refs/heads/{branch}");
    let parent = repo
        .find_reference(&refname)
        .and_then(|r| r.peel_to_commit())
        .expect("branch");
    let mut update = TreeUpdateBuilder::new();
    for (path, content) in files {
        let blob = repo.blob(content.as_bytes()).expect("blob");
        update.upsert(path.as_str(), blob, git2::FileMode::Blob);
    }
    let tree = update
        .create_updated(&repo, &parent.tree().expect("tree"))
        .expect("tree");
    let tree = repo.find_tree(tree).expect("tree");
    let sig = Signature::new("GitOps Author", "author@example.com", &Time::new(time, 0))
        .expect("signature");
    let merged = merged.map(|m| repo.find_commit(m).expect("merged"));
    let parents: Vec<&git2::Commit> = std::iter::once(&parent).chain(merged.as_ref()).collect();
    repo.commit(Some(&refname), &sig, &sig, "change", &tree, &parents)
        .expect("commit")
}

/// `count` commits of a documentation page onto main, a minute apart from `time`.
fn pages(bare: &Path, count: usize, time: i64) -> Oid {
    pages_on(bare, "main", count, time)
}

/// `count` commits of a documentation page onto `branch`, a minute apart from `time`; returns
/// the last.
fn pages_on(bare: &Path, branch: &str, count: usize, time: i64) -> Oid {
    let mut last = None;
    for n in 0..count {
        let page = vec![(format!("docs/{branch}.md"), format!("revision {n}\n"))];
        last = Some(commit_at(bare, branch, &page, time + 60 * n as i64, None));
    }
    last.expect("at least one commit")
}

/// A served GitOps repository with a long, old history: petstore at 1.0 in test and prod,
/// then `history` commits ten days old, then 2.0 in test now. Returns (guard, bare, server,
/// the commit that put 2.0 in test).
async fn long_history(
    history: usize,
) -> (tempfile::TempDir, PathBuf, git_server::GitServer, String) {
    capture_logs();
    let (dir, root) = tempdir();
    let bare = root.join("gitops.git");
    gitops_repo(&bare, &["petstore"]);
    pages(&bare, history, long_ago());
    let synced = bump(&bare, &["petstore"], "test", "2.0");
    let server = git_server::GitServer::start(&root, USER, PASSWORD).await;
    (dir, bare, server, synced)
}

/// The one clone in `cache`.
fn clone_in(cache: &Path) -> PathBuf {
    std::fs::read_dir(cache)
        .expect("cache")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "git"))
        .expect("the clone")
}

/// How many commits of main the clone holds.
fn commits_held(clone: &Path) -> usize {
    let repo = Repository::open_bare(clone).expect("clone");
    let mut walk = repo.revwalk().expect("walk");
    walk.push_ref("refs/remotes/origin/main").expect("main");
    walk.count()
}

#[tokio::test]
async fn a_cold_promotion_fetches_the_newest_commits_not_the_history() {
    let (_d, bare, server, synced) = long_history(1000).await;
    let cache = tempdir();
    let promoter = GitPromoter::new(settings(&cache.1, Some(PASSWORD)));

    let result = promoter
        .promote(promotion(&server.url("gitops"), "petstore", &synced))
        .await
        .expect("promotes");

    assert_eq!(result.outcome, PromotionOutcome::Promoted);
    assert_eq!(version_of(&bare, "petstore", "prod"), "2.0");
    let clone = clone_in(&cache.1);
    assert!(clone.join("shallow").exists(), "the clone is shallow");
    let held = commits_held(&clone);
    assert!(
        held < 100,
        "holds {held} of {} commits",
        commit_count(&bare)
    );
}

#[tokio::test]
async fn a_source_commit_deeper_than_the_first_fetch_is_found_and_the_cache_stays_correct() {
    let (_d, bare, server, synced_2) = long_history(1000).await;
    // A hundred unrelated commits land between the sync and the promotion.
    pages(&bare, 100, now());
    let url = server.url("gitops");
    let cache = tempdir();
    let promoter = GitPromoter::new(settings(&cache.1, Some(PASSWORD)));

    let first = promoter
        .promote(promotion(&url, "petstore", &synced_2))
        .await;

    assert_eq!(first.expect("promotes").outcome, PromotionOutcome::Promoted);
    assert!(logs().contains("deepened the shallow clone"));
    let clone = clone_in(&cache.1);
    assert!(
        clone.join("shallow").exists(),
        "deepened, not the whole history"
    );
    // The same (server) cache: a newer version comes by an incremental fetch into the
    // deepened clone, and the old source commit is superseded by it.
    let synced_3 = bump(&bare, &["petstore"], "test", "3.0");
    let promote = |commit: &str| promoter.promote(promotion(&url, "petstore", commit));
    assert_eq!(
        promote(&synced_3).await.expect("3.0").outcome,
        PromotionOutcome::Promoted
    );
    assert_eq!(
        promote(&synced_2).await.expect("2.0").outcome,
        PromotionOutcome::Superseded
    );
    assert_eq!(version_of(&bare, "petstore", "prod"), "3.0");
    assert!(clone.join("shallow").exists());
}

#[tokio::test]
async fn a_promotion_through_a_merges_second_parent_beyond_the_first_fetch_supersedes() {
    let (_d, bare, server, synced_2) = long_history(1000).await;
    let url = server.url("gitops");
    // Someone's local main: 3.0 synced and promoted on `side`, then a hundred more commits,
    // merged into main right after 2.0's sync. 2.0's source commit is the merge's first parent
    // (in the first fetch); the promotion of 3.0 lies a hundred commits down its second.
    let repo = Repository::open_bare(&bare).expect("repo");
    let at_2 = Oid::from_str(&synced_2).expect("oid");
    repo.reference("refs/heads/side", at_2, false, "side")
        .expect("side");
    let test = values_path("petstore", "test");
    let synced_3 = commit_at(&bare, "side", &[(test, values("3.0"))], now(), None);
    let mut on_side = promotion(&url, "petstore", &synced_3.to_string());
    on_side.branch = "side".into();
    let side_cache = tempdir();
    let side = GitPromoter::new(settings(&side_cache.1, Some(PASSWORD)))
        .promote(on_side)
        .await
        .expect("promotes on side");
    assert_eq!(side.outcome, PromotionOutcome::Promoted);
    let side_tip = pages_on(&bare, "side", 100, now());
    let merged: Vec<(String, String)> = ["test", "prod"]
        .iter()
        .map(|phase| {
            let path = values_path("petstore", phase);
            let text = local::read_file(&bare, "side", &path).expect("side's file");
            (path, text)
        })
        .collect();
    commit_at(&bare, "main", &merged, now(), Some(side_tip));
    assert_eq!(version_of(&bare, "petstore", "prod"), "3.0");

    let cache = tempdir();
    let promoter = GitPromoter::new(settings(&cache.1, Some(PASSWORD)));
    let older = promoter
        .promote(promotion(&url, "petstore", &synced_2))
        .await;

    assert_eq!(
        older.expect("answers").outcome,
        PromotionOutcome::Superseded
    );
    assert_eq!(version_of(&bare, "petstore", "prod"), "3.0");
    assert!(logs().contains("deepened the shallow clone"));
    // A commit on another branch only is still refused on main, after reading main whole.
    repo.reference("refs/heads/other", at_2, false, "other")
        .expect("other");
    let elsewhere = pages_on(&bare, "other", 1, now());
    let off_main = promoter
        .promote(promotion(&url, "petstore", &elsewhere.to_string()))
        .await
        .expect_err("not on main");
    assert_eq!(off_main.kind(), ErrorKind::FailedPrecondition, "{off_main}");
}

#[tokio::test]
async fn a_rollback_older_than_the_shallow_boundary_still_holds() {
    let (_d, bare, server, synced_2) = long_history(1000).await;
    let synced_3 = bump(&bare, &["petstore"], "test", "3.0");
    let url = server.url("gitops");
    let warm = tempdir();
    let promoter = GitPromoter::new(settings(&warm.1, Some(PASSWORD)));
    let promote = |commit: &str, rollback: bool| {
        let mut p = promotion(&url, "petstore", commit);
        p.rollback = rollback;
        promoter.promote(p)
    };
    assert_eq!(
        promote(&synced_2, false).await.expect("2.0").outcome,
        PromotionOutcome::Promoted
    );
    assert_eq!(
        promote(&synced_3, false).await.expect("3.0").outcome,
        PromotionOutcome::Promoted
    );
    assert_eq!(
        promote(&synced_2, true).await.expect("back").outcome,
        PromotionOutcome::Promoted
    );
    // A hundred commits after the rollback: beyond a cold clone's first fetch. Argo CD
    // re-syncs the test phase (still 3.0) at the newest.
    let resynced = pages(&bare, 100, now()).to_string();

    let cache = tempdir();
    let cold = GitPromoter::new(settings(&cache.1, Some(PASSWORD)));
    let promote_cold = |commit: &str| cold.promote(promotion(&url, "petstore", commit));

    let at_head = promote_cold(&resynced).await;
    assert_eq!(
        at_head.expect("answers").outcome,
        PromotionOutcome::Superseded
    );
    let at_its_own = promote_cold(&synced_3).await;
    assert_eq!(
        at_its_own.expect("answers").outcome,
        PromotionOutcome::Superseded
    );
    assert_eq!(version_of(&bare, "petstore", "prod"), "2.0");
    assert!(clone_in(&cache.1).join("shallow").exists());
}

/// A fetch's request with every `deepen N` line made `deepen 64`: what a server that never
/// deepens a shallow clone past its first fetch answers to.
fn never_deeper(request: &[u8]) -> Vec<u8> {
    let (mut out, mut rest) = (Vec::new(), request);
    while rest.len() >= 4 {
        let len = std::str::from_utf8(&rest[..4])
            .ok()
            .and_then(|l| usize::from_str_radix(l, 16).ok())
            .expect("a pkt-line length");
        // 0000 (flush) and 0001 (delimiter) carry no payload.
        let end = if len < 4 { 4 } else { len };
        let (line, next) = rest.split_at(end);
        if line[4..].starts_with(b"deepen ") {
            out.extend_from_slice(b"000edeepen 64\n");
        } else {
            out.extend_from_slice(line);
        }
        rest = next;
    }
    out
}

#[tokio::test]
async fn a_server_that_never_deepens_ends_the_promotion_after_eight_tries() {
    let (_d, bare, plain, synced) = long_history(200).await;
    // The source commit lies below the first fetch's 64 commits.
    pages(&bare, 100, now());
    let upstream = format!("{}/git-upload-pack", plain.url("gitops"));
    let front = axum::Router::new().route(
        "/gitops.git/git-upload-pack",
        axum::routing::post(
            |headers: axum::http::HeaderMap, body: axum::body::Bytes| async move {
                let mut request = reqwest::Client::new()
                    .post(upstream)
                    .body(never_deeper(&body));
                for name in ["authorization", "content-type", "accept"] {
                    if let Some(value) = headers.get(name) {
                        request = request.header(name, value.as_bytes());
                    }
                }
                let answer = request.send().await.expect("upstream");
                let status = answer.status().as_u16();
                let kind = answer.headers()["content-type"].as_bytes().to_vec();
                let body = answer.bytes().await.expect("upstream body");
                (
                    axum::http::StatusCode::from_u16(status).expect("status"),
                    [(axum::http::header::CONTENT_TYPE, kind)],
                    body,
                )
            },
        ),
    );
    let root = bare.parent().expect("root");
    let server = git_server::GitServer::start_with_api(root, USER, PASSWORD, Some(front)).await;
    let cache = tempdir();
    let promoter = GitPromoter::new(settings(&cache.1, Some(PASSWORD)));

    let err = promoter
        .promote(promotion(&server.url("gitops"), "petstore", &synced))
        .await
        .expect_err("the clone stays shallow");

    assert_eq!(err.kind(), ErrorKind::Internal);
    assert!(
        err.to_string()
            .contains("is still shallow after deepening it 8 times"),
        "{err}"
    );
    assert_eq!(version_of(&bare, "petstore", "prod"), "1.0");
}
