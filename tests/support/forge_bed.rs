//! The bench of the forge tests (tests/pull_requests.rs, tests/merge_requests.rs,
//! tests/bitbucket_pull_requests.rs, tests/gitea_pull_requests.rs): a fake forge
//! hosting a GitOps repository with 2.0 synced to test, the real server with git credentials
//! `bot` / the fake's sentinel token (the forge token too) and a run link, and a Sensor's firing.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use phasegate::{config::Config, git::local};
use serde_json::Value;
use tonic::Code;

use super::{
    FROM_TEST, TestServer, fake_bitbucket::FakeBitbucket, fake_gitea::FakeGitea,
    fake_github::FakeGitHub, fake_gitlab::FakeGitLab, gitops_repo, petstore, sync_event, tempdir,
    test_config, values_path,
};

/// A fake forge the bench can start.
pub(crate) trait FakeForge: Sized {
    /// The spec's `forge` for it.
    const KIND: &'static str;
    /// The token the bench gives the fake and the server, in this forge's format: a sentinel
    /// that must never show in an answer or a log line.
    const TOKEN: &'static str;
    /// Serves the bare repositories under `root`, git and API with `user` / `token`.
    fn start(root: &Path, user: &str, token: &str) -> impl Future<Output = Self>;
    /// The bench's repository: where its bare repository lies under `root`, and its clone URL.
    fn repository(&self, root: &Path) -> (PathBuf, String);
}

impl FakeForge for FakeGitHub {
    const KIND: &'static str = "github";
    const TOKEN: &'static str = "ghp_SENTINEL-token-7f3e";
    fn start(root: &Path, user: &str, token: &str) -> impl Future<Output = Self> {
        FakeGitHub::start(root, user, token)
    }
    fn repository(&self, root: &Path) -> (PathBuf, String) {
        (root.join("org/gitops.git"), self.repo_url("gitops"))
    }
}

impl FakeForge for FakeGitLab {
    const KIND: &'static str = "gitlab";
    const TOKEN: &'static str = "glpat-SENTINEL-token-41c9";
    fn start(root: &Path, user: &str, token: &str) -> impl Future<Output = Self> {
        FakeGitLab::start(root, user, token)
    }
    /// In a nested group, so that every call proves the URL-encoded project path.
    fn repository(&self, root: &Path) -> (PathBuf, String) {
        let project = "platform/team/gitops";
        (root.join(format!("{project}.git")), self.repo_url(project))
    }
}

impl FakeForge for FakeBitbucket {
    const KIND: &'static str = "bitbucket-datacenter";
    const TOKEN: &'static str = "BBDC-SENTINEL-token-41c9";
    fn start(root: &Path, user: &str, token: &str) -> impl Future<Output = Self> {
        FakeBitbucket::start(root, user, token)
    }
    /// Project `PLAT` under the `/bitbucket` context, its key lower case in the clone URL.
    fn repository(&self, root: &Path) -> (PathBuf, String) {
        (
            FakeBitbucket::bare_path(root, "PLAT", "gitops"),
            self.repo_url("PLAT", "gitops"),
        )
    }
}

impl FakeForge for FakeGitea {
    const KIND: &'static str = "gitea";
    const TOKEN: &'static str = "gtea-SENTINEL-token-5d21";
    fn start(root: &Path, user: &str, token: &str) -> impl Future<Output = Self> {
        FakeGitea::start(root, user, token)
    }
    fn repository(&self, root: &Path) -> (PathBuf, String) {
        (root.join("org/gitops.git"), self.repo_url("gitops"))
    }
}

/// A fake forge `F`, its repository and the server.
pub(crate) struct ForgeBed<F> {
    _dir: tempfile::TempDir,
    pub bare: PathBuf,
    pub forge: F,
    pub server: TestServer,
    /// The commit that put 2.0 in test.
    pub synced: String,
    repo: String,
}

impl<F: FakeForge> ForgeBed<F> {
    /// Starts the fake forge and the server, as the bench sets them up.
    pub(crate) async fn start() -> ForgeBed<F> {
        ForgeBed::open(|_| {}).await
    }

    /// Starts the fake forge and the server (configured by `configure`).
    pub(crate) async fn open(configure: impl FnOnce(&mut Config)) -> ForgeBed<F> {
        ForgeBed::open_with(|config, _| configure(config)).await
    }

    /// [`ForgeBed::open`], with a `configure` that sees the started fake forge (its URLs).
    pub(crate) async fn open_with(configure: impl FnOnce(&mut Config, &F)) -> ForgeBed<F> {
        let (dir, root) = tempdir();
        let forge = F::start(&root, "bot", F::TOKEN).await;
        ForgeBed::around(dir, forge, configure).await
    }

    /// The bench around `forge`, already started on `dir` with user `bot` and `F::TOKEN`.
    pub(crate) async fn around(
        dir: tempfile::TempDir,
        forge: F,
        configure: impl FnOnce(&mut Config, &F),
    ) -> ForgeBed<F> {
        let (root, token) = (dir.path().to_path_buf(), F::TOKEN);
        let (bare, repo) = forge.repository(&root);
        let synced = gitops_repo(&bare, &["petstore"]);
        let (user_file, password_file) = (root.join("username"), root.join("password"));
        std::fs::write(&user_file, "bot").expect("write");
        std::fs::write(&password_file, token).expect("write");
        let mut config = test_config();
        // The fake forge serves plain http on 127.0.0.1: the operator allows clear text.
        config.git.allow_insecure_http = true;
        config.git.username_file = Some(user_file);
        config.git.password_file = Some(password_file);
        config.forge.run_url = Some("https://phasegate.example.com/runs/{run}".into());
        configure(&mut config, &forge);
        let server = TestServer::start(config).await;
        ForgeBed {
            _dir: dir,
            bare,
            forge,
            server,
            synced,
            repo,
        }
    }

    /// A push-mode spec of the repository, with `forge` set (the fake is on 127.0.0.1).
    pub(crate) fn spec(&self, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut spec = petstore(&self.repo, &[("test", "none"), ("forge", F::KIND)]);
        spec.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        spec
    }

    /// A pull-request-mode spec, with `extra`.
    pub(crate) fn pr_spec(&self, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut all = vec![("promoteVia", "pull-request")];
        all.extend_from_slice(extra);
        self.spec(&all)
    }

    /// Fires the trigger for `sha` synced to test, as a Sensor does; the answer or the status.
    pub(crate) async fn fire(
        &self,
        spec: &BTreeMap<String, String>,
        sha: &str,
    ) -> Result<Value, tonic::Status> {
        let sensor = self.server.sensor().await;
        sensor
            .fire(spec, &sync_event(sha), FROM_TEST)
            .await
            .map(|f| f.response)
            .map_err(|f| f.status)
    }

    /// Fires as [`ForgeBed::fire`] does, expecting a refusal with `code` whose message
    /// contains each of `parts`; the message.
    pub(crate) async fn refused(
        &self,
        spec: &BTreeMap<String, String>,
        sha: &str,
        code: Code,
        parts: &[&str],
    ) -> String {
        let status = self.fire(spec, sha).await.expect_err("refused");
        assert_eq!(status.code(), code, "{status:?}");
        let message = status.message();
        for part in parts {
            assert!(message.contains(part), "{part} missing in {status:?}");
        }
        message.to_string()
    }

    /// Fires as [`ForgeBed::fire`] does, expecting FetchResource (the Sensor being created, before
    /// any event) to refuse `spec` with `INVALID_ARGUMENT` and a message containing each of
    /// `parts`; the message.
    pub(crate) async fn refused_by_fetch_resource(
        &self,
        spec: &BTreeMap<String, String>,
        parts: &[&str],
    ) -> String {
        let sensor = self.server.sensor().await;
        let failed = sensor
            .fire(spec, &sync_event(&self.synced), FROM_TEST)
            .await
            .expect_err("refused");
        assert_eq!(failed.step, "FetchResource", "{:?}", failed.status);
        assert_eq!(
            failed.status.code(),
            Code::InvalidArgument,
            "{:?}",
            failed.status
        );
        let message = failed.status.message();
        for part in parts {
            assert!(
                message.contains(part),
                "{part} missing in {:?}",
                failed.status
            );
        }
        message.to_string()
    }

    /// The version in prod on `branch`.
    pub(crate) fn prod_on(&self, branch: &str) -> String {
        let text = local::read_file(&self.bare, branch, &values_path("petstore", "prod"))
            .expect("prod values");
        phasegate::read_scalar(&text, "image.version").expect("version")
    }
}
