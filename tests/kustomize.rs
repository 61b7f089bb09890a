//! Promotions into kustomize overlays: the version kept in another overlay's `images:` or in a
//! Helm values file (`sourcePath`, `source->target` keys) lands in the target overlay's
//! `images:` entry, and `kubectl kustomize` renders the overlay before and after: the image
//! changes, nothing else does. A missing `images:` entry is refused, not created; an older tag
//! is superseded per list key, and a rollback promotes it anyway.

use std::{path::Path, process::Command};

use crate::support::{
    engine::{promotion, settings},
    tempdir,
};
use phasegate::{
    ErrorKind,
    git::{GitPromoter, PromotionOutcome, local},
    spec::PathTemplate,
};

const BASE: &[(&str, &str)] = &[
    (
        "apps/petstore/base/kustomization.yaml",
        "resources:\n- deployment.yaml\n",
    ),
    (
        "apps/petstore/base/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: petstore\nspec:\n  \
         selector:\n    matchLabels: {app: petstore}\n  template:\n    metadata:\n      \
         labels: {app: petstore}\n    spec:\n      containers:\n      - name: app\n        \
         image: petstore\n      - name: proxy\n        image: envoy\n",
    ),
];

/// The prod overlay as a human keeps it: comments between items, quotes, another image.
const PROD: &str = "# prod overlay\nresources:\n- ../../base\nimages:\n# the sidecar\n- name: envoy\n  newName: envoyproxy/envoy\n  newTag: v1.30.1\n\n# the app, bumped by phasegate\n- name: petstore\n  newName: registry.example.com/team/petstore\n  newTag: \"1.2\"  # promoted\n";

const PROD_PATH: &str = "apps/petstore/overlays/prod/kustomization.yaml";

/// `kubectl kustomize` of the prod overlay over the base, with `prod` as its kustomization.
fn render(prod: &str) -> String {
    let (_dir, root) = tempdir();
    for (path, text) in BASE.iter().copied().chain([(PROD_PATH, prod)]) {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(file, text).expect("write");
    }
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(root.join("apps/petstore/overlays/prod"))
        .output()
        .expect("kubectl must be installed (kubectl kustomize needs no cluster)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

/// The lines that differ between two renderings, as (before, after).
fn changed(before: &str, after: &str) -> Vec<(String, String)> {
    assert_eq!(before.lines().count(), after.lines().count());
    before
        .lines()
        .zip(after.lines())
        .filter(|(b, a)| b != a)
        .map(|(b, a)| (b.trim().to_string(), a.trim().to_string()))
        .collect()
}

/// A repository with the base, the prod overlay and `source` files; the commit adding them.
fn repository(root: &Path, source: &[(&str, &str)]) -> String {
    let mut files: Vec<(&str, &str)> = BASE.to_vec();
    files.push((PROD_PATH, PROD));
    files.extend_from_slice(source);
    local::commit_files(
        &root.join("gitops.git"),
        "main",
        &files,
        "Deploy 1.3 to test",
    )
    .expect("commit")
}

#[tokio::test]
async fn an_overlays_image_tag_promotes_into_the_next_overlay_and_only_the_image_changes() {
    let (_d, root) = tempdir();
    let test = PROD
        .replace("prod overlay", "test overlay")
        .replace("\"1.2\"", "\"1.3\"");
    let test_path = PROD_PATH.replace("prod", "test");
    let synced = repository(&root, &[(&test_path, &test)]);
    let bare = root.join("gitops.git");
    let cache = tempdir();
    let mut p = promotion(&format!("file://{}", bare.display()), "petstore", &synced);
    p.path =
        PathTemplate::parse("apps/petstore/overlays/{phase}/kustomization.yaml").expect("path");
    p.keys = vec!["images[name=petstore].newTag".into()];

    let result = GitPromoter::new(settings(&cache.1, None))
        .promote(p)
        .await
        .expect("promotes");

    assert_eq!(result.outcome, PromotionOutcome::Promoted);
    assert_eq!(
        (result.previous.as_str(), result.version.as_str()),
        ("1.2", "1.3")
    );
    let after = local::read_file(&bare, "main", PROD_PATH).expect("prod");
    assert_eq!(
        after,
        PROD.replace("\"1.2\"", "\"1.3\""),
        "only the scalar's text"
    );
    assert_eq!(
        changed(&render(PROD), &render(&after)),
        [(
            "- image: registry.example.com/team/petstore:1.2".to_string(),
            "- image: registry.example.com/team/petstore:1.3".to_string()
        )]
    );
    let shown = local::show(&bare, &result.commit.expect("commit")).expect("show");
    assert!(
        shown.contains("Promoted-Keys: images[name=petstore].newTag\n"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_helm_values_tag_promotes_into_a_kustomization_named_by_source_path() {
    let (_d, root) = tempdir();
    let values = "image:\n  repository: registry.example.com/team/petstore\n  tag: 1.3.0 # CI\n";
    let synced = repository(&root, &[("apps/petstore/helm/values-test.yaml", values)]);
    let bare = root.join("gitops.git");
    let cache = tempdir();
    let promoter = GitPromoter::new(settings(&cache.1, None));
    let mut p = promotion(&format!("file://{}", bare.display()), "petstore", &synced);
    p.path =
        PathTemplate::parse("apps/petstore/overlays/{phase}/kustomization.yaml").expect("path");
    p.source_path =
        Some(PathTemplate::parse("apps/petstore/helm/values-{phase}.yaml").expect("path"));
    p.keys = vec!["image.tag -> images[name=petstore].newTag".into()];

    let result = promoter.promote(p.clone()).await.expect("promotes");

    assert_eq!(result.outcome, PromotionOutcome::Promoted);
    let after = local::read_file(&bare, "main", PROD_PATH).expect("prod");
    // `1.3.0` is a string to every reader: the target's double quotes stay.
    assert_eq!(after, PROD.replace("\"1.2\"", "\"1.3.0\""));
    assert_eq!(
        changed(&render(PROD), &render(&after)),
        [(
            "- image: registry.example.com/team/petstore:1.2".to_string(),
            "- image: registry.example.com/team/petstore:1.3.0".to_string()
        )]
    );
    let shown = local::show(&bare, &result.commit.expect("commit")).expect("show");
    assert!(
        shown.contains("images[name=petstore].newTag: 1.2 -> 1.3.0\n"),
        "{shown}"
    );
    assert!(
        shown.contains("Promoted-Keys: images[name=petstore].newTag\n"),
        "{shown}"
    );
    let again = promoter.promote(p).await.expect("again");
    assert_eq!(again.outcome, PromotionOutcome::AlreadyPromoted);
}

#[tokio::test]
async fn a_missing_images_entry_is_not_found_naming_the_selector_and_nothing_is_pushed() {
    let (_d, root) = tempdir();
    let values = "image:\n  tag: 1.3.0\n";
    let synced = repository(&root, &[("apps/petstore/helm/values-test.yaml", values)]);
    let bare = root.join("gitops.git");
    let cache = tempdir();
    let mut p = promotion(&format!("file://{}", bare.display()), "petstore", &synced);
    p.path =
        PathTemplate::parse("apps/petstore/overlays/{phase}/kustomization.yaml").expect("path");
    p.source_path =
        Some(PathTemplate::parse("apps/petstore/helm/values-{phase}.yaml").expect("path"));
    p.keys = vec!["image.tag->images[name=cart].newTag".into()];

    let err = GitPromoter::new(settings(&cache.1, None))
        .promote(p)
        .await
        .expect_err("no cart entry");

    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("[name=cart]") && message.contains(PROD_PATH),
        "{message}"
    );
    assert_eq!(
        local::read_file(&bare, "main", PROD_PATH).expect("prod"),
        PROD
    );
}

#[tokio::test]
async fn an_older_tag_is_superseded_per_list_key_and_a_rollback_still_promotes_it() {
    let (_d, root) = tempdir();
    let test_path = PROD_PATH.replace("prod", "test");
    let test = |tag: &str| PROD.replace("\"1.2\"", &format!("\"{tag}\""));
    let synced_3 = repository(&root, &[(&test_path, &test("1.3"))]);
    let bare = root.join("gitops.git");
    let synced_4 = local::commit_files(&bare, "main", &[(&test_path, &test("1.4"))], "1.4 to test")
        .expect("commit");
    let cache = tempdir();
    let promoter = GitPromoter::new(settings(&cache.1, None));
    let url = format!("file://{}", bare.display());
    let at = |commit: &str| {
        let mut p = promotion(&url, "petstore", commit);
        p.path =
            PathTemplate::parse("apps/petstore/overlays/{phase}/kustomization.yaml").expect("path");
        p.keys = vec!["images[name=petstore].newTag".into()];
        p
    };

    let newer = promoter.promote(at(&synced_4)).await.expect("1.4");
    let older = promoter.promote(at(&synced_3)).await.expect("1.3");

    assert_eq!(newer.outcome, PromotionOutcome::Promoted);
    assert_eq!(older.outcome, PromotionOutcome::Superseded);
    let mut rollback = at(&synced_3);
    rollback.rollback = true;
    let back = promoter.promote(rollback).await.expect("rollback");
    assert_eq!(back.outcome, PromotionOutcome::Promoted);
    assert_eq!(
        local::read_file(&bare, "main", PROD_PATH).expect("prod"),
        PROD.replace("\"1.2\"", "\"1.3\"")
    );
}
