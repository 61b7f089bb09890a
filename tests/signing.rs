//! Signed promotion commits, verified by real git: `git verify-commit` with
//! `gpg.format=ssh` and an allowed signers file for SSH keys (made by `ssh-keygen`), and with a
//! `gpg` keyring for OpenPGP keys — for a direct push, a batched push and the commit re-created
//! after a lost race. A commit changed after signing fails verification; every key that cannot
//! sign as configured is refused (at start-up for the server's key, `FAILED_PRECONDITION` for a
//! `credentialsSecret` key), and no passphrase shows up in an answer or a log line.

mod keys;
mod server;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::support::{engine::*, *};
use keys::{Gpg, allowed_signers, ssh_fingerprint, ssh_key, verify_ssh};
use phasegate::{
    credentials::{Secret, SigningKeySource},
    git::{
        GitPromoter, GitSettings, IdentityCheck, PromotionOutcome, Signer, SigningFormat, local,
    },
};

const EMAIL: &str = "bot@example.com";

/// The engine's test settings, signing with `signer` as [`EMAIL`].
fn signed(cache: &Path, signer: Arc<Signer>) -> GitSettings {
    GitSettings {
        author_email: EMAIL.into(),
        signer: Some(signer),
        ..settings(cache, Some(PASSWORD))
    }
}

fn load(key: &str, passphrase: Option<&str>, email: &str) -> Arc<Signer> {
    let source = SigningKeySource {
        key: Secret::new(key),
        passphrase: passphrase.map(Secret::new),
    };
    let identity = IdentityCheck {
        email,
        allowed_signers: None,
    };
    Arc::new(Signer::load(&source, None, &identity).expect("the key loads"))
}

/// Promotes `apps` in a served repository with `signer`: first one alone while someone
/// else pushes in between (the commit is re-created on the new head), then the rest at once
/// (batched pushes). Returns the repository (guard, bare path) and the promotion commits,
/// newest first.
async fn promote_direct_after_a_race_then_batched(
    signer: Arc<Signer>,
    apps: &[&str],
) -> (tempfile::TempDir, PathBuf, Vec<String>) {
    let (dir, bare, server, synced) = served(apps).await;
    let before = commit_count(&bare);
    let cache = tempdir();
    let promoter = GitPromoter::new(signed(&cache.1, signer.clone()));
    let other = bare.clone();
    server.before_next_push(move || {
        local::commit_files(&other, "main", &[("README.md", "race\n")], "racing commit")
            .expect("racing commit");
    });
    let first = promoter
        .promote(promotion(&server.url("gitops"), apps[0], &synced))
        .await
        .expect("promotes");
    assert_eq!(first.outcome, PromotionOutcome::Promoted);
    assert_eq!(first.push_attempts, 2, "the first push lost the race");
    assert_eq!(first.signature.as_ref(), Some(signer.info()));

    let pushes_before = server.pushes();
    let batch = apps[1..].iter().map(|app| {
        let (promoter, p) = (
            promoter.clone(),
            promotion(&server.url("gitops"), app, &synced),
        );
        tokio::spawn(async move { promoter.promote(p).await })
    });
    let results = futures_util::future::join_all(batch).await;
    for r in results {
        let r = r.expect("task").expect("promotes");
        assert_eq!(r.outcome, PromotionOutcome::Promoted);
        assert_eq!(r.signature.as_ref(), Some(signer.info()));
    }
    assert!(
        server.pushes() - pushes_before < apps.len() - 1,
        "the later promotions shared pushes"
    );
    let log = local::log(&bare, "main", 100).expect("log");
    let new = commit_count(&bare) - before;
    assert_eq!(
        new,
        apps.len() + 1,
        "a commit per promotion and the racer's"
    );
    let signed = log
        .into_iter()
        .take(new)
        .filter(|(_, subject)| subject != "racing commit")
        .map(|(id, _)| id)
        .collect();
    (dir, bare, signed)
}

#[tokio::test]
async fn ssh_signed_commits_verify_with_git_direct_batched_and_after_a_lost_race() {
    let (_d, root) = tempdir();
    let key = ssh_key(&root, "ed25519", "");
    let signer = load(&std::fs::read_to_string(&key).expect("key"), None, EMAIL);
    assert_eq!(signer.info().format, SigningFormat::Ssh);
    assert_eq!(signer.info().fingerprint, ssh_fingerprint(&key));
    let allowed = allowed_signers(&root, EMAIL, &[&key]);
    let apps = ["petstore", "shop", "cart", "auth", "search", "mail"];

    let (_repo, bare, commits) = promote_direct_after_a_race_then_batched(signer, &apps).await;

    assert_eq!(commits.len(), apps.len());
    for id in &commits {
        let out = verify_ssh(&bare, id, &allowed);
        assert!(
            out.status.success(),
            "git verify-commit {id}: {}",
            keys::text(&out)
        );
        assert!(
            keys::text(&out).contains(&format!("Good \"git\" signature for {EMAIL}")),
            "{}",
            keys::text(&out)
        );
        let shown = local::show(&bare, id).expect("show");
        assert!(shown.contains(&format!("<{EMAIL}>")), "{shown}");
    }
}

#[tokio::test]
async fn openpgp_signed_commits_verify_with_gpg_direct_batched_and_after_a_lost_race() {
    let (_d, root) = tempdir();
    let gpg = Gpg::new(&root);
    let primary = gpg.generate(&format!("Phasegate Bot <{EMAIL}>"), "");
    // A signing subkey, as many organisations keep their primary key offline: it signs.
    let subkey = gpg.add_signing_subkey(&primary, "");
    let signer = load(&gpg.export_secret(&primary, ""), None, EMAIL);
    assert_eq!(signer.info().format, SigningFormat::Openpgp);
    assert_eq!(signer.info().fingerprint, subkey);
    let apps = ["petstore", "shop", "cart", "auth"];

    let (_repo, bare, commits) = promote_direct_after_a_race_then_batched(signer, &apps).await;

    for id in &commits {
        let out = gpg.verify(&bare, id);
        assert!(
            out.status.success(),
            "git verify-commit {id}: {}",
            keys::text(&out)
        );
        assert!(
            keys::text(&out).contains(&format!("VALIDSIG {subkey}")),
            "{}",
            keys::text(&out)
        );
    }
}

#[tokio::test]
async fn a_commit_changed_after_signing_fails_verification() {
    let (_d, root) = tempdir();
    let key = ssh_key(&root, "ed25519", "");
    let allowed = allowed_signers(&root, EMAIL, &[&key]);
    let gpg = Gpg::new(&root);
    let fpr = gpg.generate(&format!("Phasegate Bot <{EMAIL}>"), "");
    let signers = [
        load(&std::fs::read_to_string(&key).expect("key"), None, EMAIL),
        load(&gpg.export_secret(&fpr, ""), None, EMAIL),
    ];
    for signer in signers {
        let bare = root.join(format!("gitops-{}.git", signer.info().format));
        let synced = gitops_repo(&bare, &["petstore"]);
        let cache = tempdir();
        let promoter = GitPromoter::new(signed(&cache.1, signer.clone()));
        let result = promoter
            .promote(promotion(&file_url(&bare), "petstore", &synced))
            .await
            .expect("promotes");
        let id = result.commit.expect("a commit");
        let verify = |id: &str| match signer.info().format {
            SigningFormat::Ssh => verify_ssh(&bare, id, &allowed),
            SigningFormat::Openpgp => gpg.verify(&bare, id),
        };
        assert!(
            verify(&id).status.success(),
            "the commit as written verifies"
        );

        let raw = keys::git(&bare, &["cat-file", "commit", &id]);
        let message = raw.replace("Promote image.version", "Promote image.VERSION");
        let parent_tree = keys::git(&bare, &["rev-parse", &format!("{id}~1^{{tree}}")]);
        let tree_line = raw.lines().next().expect("tree line").to_string();
        let tree = raw.replace(&tree_line, &format!("tree {}", parent_tree.trim()));
        for tampered in [message, tree] {
            assert_ne!(tampered, raw);
            let forged = keys::git_stdin(
                &bare,
                &["hash-object", "-t", "commit", "-w", "--stdin"],
                &tampered,
            );
            let out = verify(forged.trim());
            assert!(
                !out.status.success(),
                "a changed commit must not verify ({}): {}",
                signer.info().format,
                keys::text(&out)
            );
        }
    }
}
