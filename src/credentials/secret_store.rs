//! `credentialsSecret`: git credentials from a Secret in the server's namespace (keys
//! `username`, `password`, `email`, as in the classic setup; or a GitHub App with Argo CD's
//! keys `githubAppID`, `githubAppInstallationID`, `githubAppPrivateKey`; optionally
//! `signingKey` and `signingKeyPassphrase` to sign the commits, and Argo CD's `url`: the
//! repository, or prefix of repositories, the Secret is for), cached briefly, never logged.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Secret as K8sSecret;
use kube::Api;

use super::{
    Credentials, RepoAuth, Secret, SigningKeySource,
    github_app::{BadAppField, GitHubApp, app_api_root},
};
use crate::cluster::{Cluster, ClusterError};

/// A Secret's credentials, its signing key and its `url` (Argo CD's key: the repository or
/// prefix it is for), when it has them.
type FromSecret = (RepoAuth, Option<SigningKeySource>, Option<String>);

/// Argo CD's names of a GitHub App's keys in a repository Secret.
const GITHUB_APP_KEYS: [&str; 3] = [
    "githubAppID",
    "githubAppInstallationID",
    "githubAppPrivateKey",
];

/// Argo CD's key of a GitHub Enterprise App's API root (`https://ghe.example.com/api/v3`).
const GITHUB_ENTERPRISE_URL: &str = "githubAppEnterpriseBaseUrl";

/// The API a Secret's GitHub App talks to: its `githubAppEnterpriseBaseUrl`, else
/// `https://api.github.com`; held to the server App's rule ([`app_api_root`]).
fn app_api(enterprise: Option<String>, what: &str) -> Result<url::Url, ClusterError> {
    let text = enterprise.unwrap_or_else(|| "https://api.github.com".into());
    app_api_root(&text).ok_or_else(|| {
        ClusterError::Precondition(format!(
            "{what}: key `{GITHUB_ENTERPRISE_URL}` is not an https:// API root URL (http only \
             to this machine)"
        ))
    })
}

/// A rotated Secret is picked up within this long; meanwhile runs do not hammer the API.
const CACHE_FOR: Duration = Duration::from_secs(30);

/// Reads and caches credentials Secrets.
#[derive(Default)]
pub struct SecretStore {
    cache: Mutex<HashMap<String, (Instant, FromSecret)>>,
}

impl SecretStore {
    /// The credentials (and signing key, if any) in Secret `name` of the cluster's namespace:
    /// a GitHub App when it has the App's keys, a username and password otherwise.
    pub async fn credentials(
        &self,
        cluster: &Cluster,
        name: &str,
    ) -> Result<FromSecret, ClusterError> {
        if let Some((at, creds)) = self.lock().get(name)
            && at.elapsed() < CACHE_FOR
        {
            return Ok(creds.clone());
        }
        let api: Api<K8sSecret> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
        let what = format!("Secret `{name}` in namespace `{}`", cluster.namespace);
        let secret = api
            .get(name)
            .await
            .map_err(|e| ClusterError::from_kube(e, &what))?;
        let data = secret.data.unwrap_or_default();
        let field = |key: &str| -> Result<Option<String>, ClusterError> {
            data.get(key)
                .map(|v| {
                    String::from_utf8(v.0.clone())
                        .map(|s| super::without_line_end(&s))
                        .map_err(|_| {
                            ClusterError::Precondition(format!("{what}: key `{key}` is not UTF-8"))
                        })
                })
                .transpose()
        };
        let missing = |key: &str| ClusterError::NotFound(format!("{what} has no key `{key}`"));
        let creds = if GITHUB_APP_KEYS.iter().any(|k| data.contains_key(*k)) {
            let [id, installation, key] = GITHUB_APP_KEYS;
            let value = |k: &str| field(k)?.ok_or_else(|| missing(k));
            let app = GitHubApp::new(&value(id)?, &value(installation)?, &value(key)?).map_err(
                |bad| {
                    let k = match bad {
                        BadAppField::AppId => id,
                        BadAppField::InstallationId => installation,
                        BadAppField::PrivateKey => key,
                    };
                    ClusterError::Precondition(format!("{what}: key `{k}` {}", bad.problem()))
                },
            )?;
            RepoAuth::GitHubApp(app, app_api(field(GITHUB_ENTERPRISE_URL)?, &what)?)
        } else {
            RepoAuth::Password(Credentials {
                username: field("username")?.ok_or_else(|| missing("username"))?,
                password: Secret::new(field("password")?.ok_or_else(|| missing("password"))?),
                email: field("email")?,
            })
        };
        let signing = match field("signingKey")? {
            Some(key) => Some(SigningKeySource {
                key: Secret::new(key),
                passphrase: field("signingKeyPassphrase")?.map(Secret::new),
            }),
            None => None,
        };
        let creds = (creds, signing, field("url")?);
        self.lock()
            .insert(name.to_string(), (Instant::now(), creds.clone()));
        Ok(creds)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, FromSecret)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}
