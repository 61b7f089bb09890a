//! A run's access stage: its `credentialsSecret` read, its signing key loaded and its
//! credentials chosen, all before any test, so a bad Secret, key or App costs no test run.

use std::sync::Arc;

use super::run::RunTask;
use crate::{
    Error, Result,
    credentials::{Credentials, SigningKeySource, url_covers},
    error::Need,
    forge::access::RunAccess,
    git::{Promotion, Signer},
    policy::PolicyError,
    spec::RepoUrl,
};

/// The credentials of a run, chosen before any test: a bad Secret, key or App fails first.
pub(super) struct Access {
    pub(super) run: RunAccess,
    credentials: Option<Credentials>,
    signer: Option<Arc<Signer>>,
}

/// A Secret that says which repository it is for (Argo CD's `url` key, as in its
/// repository and repo-creds Secrets) serves that repository, or the repositories below that
/// prefix, only: `PERMISSION_DENIED` otherwise, before anything is sent.
fn secret_url_covers(name: &str, url: &str, repo: &RepoUrl) -> Result<()> {
    let denied = |why: String| PolicyError::Denied {
        what: format!("credentialsSecret {name} for {repo}: {why}"),
    };
    match url_covers(url, repo) {
        Ok(true) => Ok(()),
        Ok(false) => Err(denied(format!(
            "its `url` key names {url}, which does not cover it"
        ))
        .into()),
        Err(e) => Err(denied(format!(
            "its `url` key is not a repository URL or prefix ({e})"
        ))
        .into()),
    }
}

impl RunTask {
    /// The `credentialsSecret` (read from Kubernetes), its signing key (loaded), and the run's
    /// credentials (a GitHub App's token is minted here): all before any test.
    pub(super) async fn access(&self) -> Result<Access> {
        let (plan, e) = (&self.plan, &self.engine);
        let (from_secret, signing_key) = match &plan.credentials_secret {
            Some(name) => {
                let cluster = self.cluster(Need::CredentialsSecret)?;
                let (auth, key, url) = e.secrets.credentials(cluster, name).await?;
                if let Some(url) = url {
                    secret_url_covers(name, &url, &plan.repo)?;
                }
                (Some(auth), key)
            }
            None => (None, None),
        };
        // Checked before testing: a key that cannot sign must not cost a test run.
        let email = from_secret
            .as_ref()
            .and_then(|a| a.email().map(str::to_string));
        let signer = self.signer(signing_key, email).await?;
        let run = RunAccess::choose(
            plan,
            from_secret,
            e.scopes.credentials_for(&plan.repo),
            &e.app_tokens,
            &e.forge,
        )?;
        let credentials = run.git().await?;
        Ok(Access {
            run,
            credentials,
            signer,
        })
    }

    /// The `credentialsSecret`'s signing key, loaded to sign as the Secret's email.
    async fn signer(
        &self,
        key: Option<SigningKeySource>,
        email: Option<String>,
    ) -> Result<Option<Arc<Signer>>> {
        let Some(key) = key else {
            return Ok(None);
        };
        let promoter = self.engine.promoter.clone();
        // Decrypting a key is deliberately slow work: keep it off the async threads.
        let load = move || promoter.signer_for(&key, email.as_deref());
        let loaded = tokio::task::spawn_blocking(load)
            .await
            .map_err(|e| Error::Internal(format!("loading the signing key: {e}")))?;
        Ok(Some(loaded?))
    }

    /// The promotion this run asks of git, with its credentials and signer.
    pub(super) fn promotion(&self, access: &Access) -> Promotion {
        let plan = &self.plan;
        Promotion {
            repo: plan.repo.clone(),
            branch: plan.branch.clone(),
            path: plan.path.clone(),
            source_path: plan.source_path.clone(),
            keys: plan.keys.clone(),
            source: plan.source.clone(),
            target: plan.target.clone(),
            commit: plan.commit.clone(),
            message: plan.commit_message.clone(),
            dry_run: plan.dry_run,
            rollback: plan.rollback,
            allow_unmerged_source: plan.allow_unmerged_source,
            run_id: self.id.clone(),
            credentials: access.credentials.clone(),
            signer: access.signer.clone(),
            proposal: None,
        }
    }
}
