//! The git promotion engine's fixtures: its settings with the test server's credentials, a
//! promotion of one fixture app, a served GitOps repository, promotions started at once.

use std::path::Path;

use phasegate::{
    credentials::{CredentialScopes, Credentials, Secret},
    git::{GitError, GitPromoter, GitSettings, Promotion, PromotionResult},
    spec::{CommitId, MessageTemplate, PathTemplate, Phase, RepoGlobs, RepoUrl},
};

use super::{PATH, capture_logs, git_server::GitServer, gitops_repo, tempdir};

pub(crate) const USER: &str = "ci-bot";
pub(crate) const PASSWORD: &str = "SENTINEL-Pa55-7f3e";

pub(crate) fn settings(cache: &Path, password: Option<&str>) -> GitSettings {
    GitSettings {
        cache_dir: cache.to_path_buf(),
        push_attempts: 10,
        max_fetch_bytes: phasegate::git::DEFAULT_MAX_FETCH_BYTES,
        author_name: "phasegate".into(),
        author_email: "phasegate@example.com".into(),
        // The server's own credentials, for the local git server (plain http, allowed here).
        credentials: password
            .map(|p| {
                let creds = Credentials {
                    username: USER.into(),
                    password: Secret::new(p),
                    email: Some("ci-bot@example.com".into()),
                };
                let repos = RepoGlobs::new(&["http://127.0.0.1:*/**".into()]).expect("globs");
                CredentialScopes::default().with_legacy(Some(creds), repos, true)
            })
            .unwrap_or_default(),
        ssh_key: None,
        ssh_known_hosts: None,
        signer: None,
        signing_allowed_signers: None,
    }
}

pub(crate) fn promotion(url: &str, app: &str, commit: &str) -> Promotion {
    Promotion {
        repo: RepoUrl::parse(url).expect("url"),
        branch: "main".into(),
        path: PathTemplate::parse(&PATH.replace("{app}", app)).expect("path"),
        source_path: None,
        keys: vec!["image.version".into()],
        source: Phase::parse("source", "test").expect("phase"),
        target: Phase::parse("target", "prod").expect("phase"),
        commit: CommitId::parse("commit", commit).expect("commit"),
        message: MessageTemplate::parse("Promote {key} {version} from {source} to {target}")
            .expect("message"),
        dry_run: false,
        rollback: false,
        allow_unmerged_source: false,
        run_id: format!("test-{app}"),
        credentials: None,
        signer: None,
        proposal: None,
    }
}

/// A served GitOps repository `gitops.git` with `apps`; returns (dir guard, bare path, server,
/// the commit that put 2.0 in test).
pub(crate) async fn served(
    apps: &[&str],
) -> (tempfile::TempDir, std::path::PathBuf, GitServer, String) {
    capture_logs();
    let (dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, apps);
    let server = GitServer::start(&root, USER, PASSWORD).await;
    (dir, bare, server, synced)
}

/// Starts every promotion at once (in this order), then collects the answers in that order.
pub(crate) async fn promote_at_once(
    promotions: impl IntoIterator<Item = (GitPromoter, Promotion)>,
) -> Vec<Result<PromotionResult, GitError>> {
    let tasks: Vec<_> = promotions
        .into_iter()
        .map(|(promoter, p)| tokio::spawn(async move { promoter.promote(p).await }))
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("task"));
    }
    results
}
