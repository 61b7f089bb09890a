//! What only some Bitbucket Data Center versions or settings allow, checked before phasegate
//! relies on it: drafts (8.18+), Bitbucket's own auto-merge (8.15+, and allowed by the
//! repository or its project). Labels, which it has none of, are refused with the spec.

use std::sync::atomic::Ordering;

use reqwest::Method;
use serde::Deserialize;

use super::BitbucketDataCenter;
use crate::forge::ForgeError;

/// Drafts exist since Bitbucket Data Center 8.18; older versions ignore the field.
const DRAFTS_SINCE: (u64, u64) = (8, 18);

impl BitbucketDataCenter {
    /// Drafts need 8.18+: older versions would open a pull request that is ready for review.
    pub(super) async fn check_drafts(&self) -> Result<(), ForgeError> {
        let props: ServerProperties = self
            .read("read the server version", "application-properties")
            .await?;
        let version = props.version;
        match major_minor(&version) >= DRAFTS_SINCE {
            true => Ok(()),
            false => Err(ForgeError::Refused(format!(
                "prDraft: draft pull requests need Bitbucket Data Center {}.{} or later; this \
                 server is {version}: remove prDraft",
                DRAFTS_SINCE.0, DRAFTS_SINCE.1
            ))),
        }
    }

    /// Bitbucket's own auto-merge (8.15+) must be allowed by the repository (or its project).
    pub(super) async fn check_auto_merge(&self) -> Result<(), ForgeError> {
        if self.auto_merge_ok.load(Ordering::Relaxed) {
            return Ok(());
        }
        let path = format!("{}/settings/auto-merge", self.root);
        let what = "read the auto-merge setting";
        let answer = self.request(what, Method::GET, &path, None).await?;
        let enabled = match answer.status.as_u16() {
            200 => self.api.read::<AutoMergeSetting>(what, answer)?.enabled,
            // No such resource (no message about a missing repository): before 8.15.
            404 | 405 if answer.message().is_empty() => {
                return Err(ForgeError::Refused(
                    "autoMerge needs Bitbucket Data Center 8.15 or later (its own auto-merge); \
                     remove autoMerge, and merge the pull request in Bitbucket"
                        .into(),
                ));
            }
            _ => return Err(self.api.failed(what, &answer)),
        };
        if !enabled {
            return Err(ForgeError::Refused(format!(
                "autoMerge: auto-merge is not enabled for {} (Repository or project settings › \
                 Auto-merge in Bitbucket): enable it, or remove autoMerge",
                self.project
            )));
        }
        self.auto_merge_ok.store(true, Ordering::Relaxed);
        Ok(())
    }
}

/// The server's `application-properties`.
#[derive(Debug, Deserialize)]
struct ServerProperties {
    /// `8.19.1`.
    version: String,
}

/// A repository's (or its project's) auto-merge setting.
#[derive(Debug, Deserialize)]
struct AutoMergeSetting {
    enabled: bool,
}

/// `(major, minor)` of a version string such as `8.19.1`; unreadable parts count as 0.
fn major_minor(version: &str) -> (u64, u64) {
    let mut parts = version.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_versions_by_number_not_text() {
        assert!(major_minor("8.9.0") < DRAFTS_SINCE);
        assert!(major_minor("8.18.0") >= DRAFTS_SINCE);
        assert!(major_minor("9.4.2") >= DRAFTS_SINCE);
        assert_eq!(major_minor("garbage"), (0, 0));
    }
}
