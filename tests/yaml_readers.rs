//! The written value as other YAML readers see it: PyYAML, a YAML 1.1 reader (booleans `yes`
//! and `on`, octal `017`, `1_000`, sexagesimal `12:30`, timestamps, the resolution Helm's Go YAML
//! follows), and serde_yaml_ng (YAML 1.2). For every source scalar of every type class, written
//! over targets of other types, each reader must see in the target exactly the value and type
//! it sees in the source, in a mapping and in a list's item. And through a real promotion: each
//! key takes its source's type.

use std::process::Command;

use crate::support::{
    self,
    engine::{promotion, settings},
};
use phasegate::{
    git::{GitPromoter, PromotionOutcome, local},
    read_value, set_scalar,
};
use serde_json::json;

/// Targets holding a string, an integer, a float, quoted strings, a boolean.
const TARGETS: &[&str] = &["v1", "41", "1.9", "'v1'", "\"41\"", "no"];

/// (source file, written target file) for every source value, quoting and target.
fn written() -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for value in support::TYPED_SCALARS {
        for quote in ["", "'", "\""] {
            let source = format!("image:\n  version: {}\n", support::yaml_token(value, quote));
            let scalar = read_value(&source, "image.version").expect(&source);
            for old in TARGETS {
                let target = format!("image:\n  version: {old}  # c\n");
                let out = set_scalar(&target, "image.version", &scalar)
                    .unwrap_or_else(|e| panic!("{source} over {old}: {e}"));
                pairs.push((source.clone(), out));
            }
        }
    }
    pairs
}

#[test]
fn yaml_1_1_reads_the_written_value_as_it_reads_the_source() {
    const SCRIPT: &str = r#"
import json, sys, yaml
bad = []
for source, written in json.load(open(sys.argv[1])):
    a = yaml.safe_load(source)["image"]["version"]
    b = yaml.safe_load(written)["image"]["version"]
    if (type(a), repr(a)) != (type(b), repr(b)):
        bad.append([source, written, repr(a), repr(b)])
print(json.dumps(bad))
"#;
    let pairs = written();
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), json!(pairs).to_string()).expect("write cases");
    let out = support::succeed(
        Command::new("python3")
            .args(["-c", SCRIPT])
            .arg(file.path()),
        "python3 with PyYAML (installed by .ci/test.sh)",
    );
    let bad: Vec<Vec<String>> = serde_json::from_slice(&out).expect("json");
    assert!(
        bad.is_empty(),
        "{} of {} differ: {bad:#?}",
        bad.len(),
        pairs.len()
    );
    assert_eq!(
        pairs.len(),
        support::TYPED_SCALARS.len() * 3 * TARGETS.len()
    );
}

/// (source file, written target file) for every source value written into a kustomization's
/// `images:` list, block and flow, selected by name: the version is `images[1].newTag`.
fn written_in_lists() -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for value in support::TYPED_SCALARS {
        for quote in ["", "'", "\""] {
            let source = format!("image:\n  version: {}\n", support::yaml_token(value, quote));
            let scalar = read_value(&source, "image.version").expect(&source);
            for old in TARGETS {
                for target in [
                    format!(
                        "images:\n- name: web\n  newTag: x\n# app\n- name: app\n  newTag: {old}  # c\n"
                    ),
                    format!("images: [{{name: web, newTag: x}}, {{newTag: {old}, name: app}}]\n"),
                ] {
                    match set_scalar(&target, "images[name=app].newTag", &scalar) {
                        Ok(out) => pairs.push((source.clone(), out)),
                        // Go YAML v2 (Helm) refuses a plain `12:30` in a flow collection.
                        Err(e) if e.to_string().contains("flow collection") => {
                            assert!(quote.is_empty() && value.contains(':'), "{source}: {e}");
                        }
                        Err(e) => panic!("{source} over {target}: {e}"),
                    }
                }
            }
        }
    }
    pairs
}

#[test]
fn yaml_1_1_reads_a_value_written_in_a_list_as_it_reads_the_source() {
    const SCRIPT: &str = r#"
import json, sys, yaml
bad = []
for source, written in json.load(open(sys.argv[1])):
    a = yaml.safe_load(source)["image"]["version"]
    b = yaml.safe_load(written)["images"][1]["newTag"]
    if (type(a), repr(a)) != (type(b), repr(b)):
        bad.append([source, written, repr(a), repr(b)])
print(json.dumps(bad))
"#;
    let pairs = written_in_lists();
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), json!(pairs).to_string()).expect("write cases");
    let out = support::succeed(
        Command::new("python3")
            .args(["-c", SCRIPT])
            .arg(file.path()),
        "python3 with PyYAML (installed by .ci/test.sh)",
    );
    let bad: Vec<Vec<String>> = serde_json::from_slice(&out).expect("json");
    assert!(
        bad.is_empty(),
        "{} of {} differ: {bad:#?}",
        bad.len(),
        pairs.len()
    );
    let read = |text: &str, list: bool| {
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).expect("valid YAML");
        let value = if list {
            &doc["images"][1]["newTag"]
        } else {
            &doc["image"]["version"]
        };
        format!("{value:?}")
    };
    for (source, written) in &pairs {
        assert_eq!(
            read(written, true),
            read(source, false),
            "{source} -> {written}"
        );
    }
}

#[test]
fn yaml_1_2_reads_the_written_value_as_it_reads_the_source() {
    let read = |text: &str| {
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).expect("valid YAML");
        format!("{:?}", doc["image"]["version"])
    };
    for (source, written) in written() {
        assert_eq!(read(&written), read(&source), "{source} -> {written}");
    }
}

#[tokio::test]
async fn a_promotion_writes_each_key_with_its_source_type() {
    let (_d, root) = support::tempdir();
    let bare = root.join("gitops.git");
    let path = |phase: &str| format!("apps/{phase}/values.yaml");
    let synced = local::commit_files(
        &bare,
        "main",
        &[
            (
                &path("test"),
                "replicas: 3\nimage:\n  tag: \"1.10\"\n  pull: yes\n",
            ),
            (
                &path("prod"),
                "replicas: \"3\" # pinned\nimage:\n  tag: 1.9\n  pull: 'no'\n",
            ),
        ],
        "Deploy 1.10 to test",
    )
    .expect("commit");
    let cache = support::tempdir();
    let promoter = GitPromoter::new(settings(&cache.1, None));
    let mut p = promotion(&format!("file://{}", bare.display()), "x", &synced);
    p.path = phasegate::spec::PathTemplate::parse("apps/{phase}/values.yaml").expect("path");
    p.keys = vec!["replicas".into(), "image.tag".into(), "image.pull".into()];

    let result = promoter.promote(p).await.expect("promotes");

    // `replicas` differed only in type: that is a change too.
    assert_eq!(result.outcome, PromotionOutcome::Promoted);
    let prod = local::read_file(&bare, "main", &path("prod")).expect("prod values");
    assert_eq!(
        prod,
        "replicas: 3 # pinned\nimage:\n  tag: '1.10'\n  pull: yes\n"
    );
}
