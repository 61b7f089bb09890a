use super::*;
use crate::spec::{Resource, RunnerKind, SourceRef, TestPlan, TestProfiles, TestSpec};

fn resource(repo: &str, source: &str, target: &str, test: TestSpec) -> Resource {
    Resource {
        repo: repo.into(),
        path: "a/{phase}.yaml".into(),
        source: SourceRef {
            phase: source.into(),
            path: String::new(),
            commit: "abcdef1".into(),
        },
        target: crate::spec::TargetRef {
            phase: target.into(),
        },
        test,
        ..Default::default()
    }
}

fn job(image: &str) -> TestSpec {
    TestSpec {
        runner: Some(RunnerKind::Job),
        image: Some(image.into()),
        target: "http://app.test".into(),
        ..Default::default()
    }
}

fn plan(repo: &str, source: &str, target: &str) -> Plan {
    Plan::from_resource(
        &resource(repo, source, target, job("evil.io/miner:1")),
        &TestProfiles::default(),
    )
    .expect("valid plan")
}

fn command_plan(program: &str) -> Plan {
    let test = TestSpec {
        runner: Some(RunnerKind::Command),
        command: vec![program.into()],
        target: "http://app.test".into(),
        ..Default::default()
    };
    Plan::from_resource(
        &resource("https://x/y.git", "test", "prod", test),
        &TestProfiles::default(),
    )
    .expect("valid plan")
}

fn none_plan() -> Plan {
    let test = TestSpec {
        runner: Some(RunnerKind::None),
        ..Default::default()
    };
    Plan::from_resource(
        &resource("https://x/y.git", "test", "prod", test),
        &TestProfiles::default(),
    )
    .expect("valid plan")
}

fn denial(p: &Policy, plan: Plan) -> String {
    p.admit(plan, &CredentialScopes::default())
        .expect_err("denied")
        .to_string()
}

#[test]
fn refuses_everything_nobody_allowed_by_default() {
    let p = Policy::new(&PolicyConfig::default()).expect("compiles");
    assert!(!p.is_permissive());
    assert!(denial(&p, plan("https://x/y.git", "test", "prod")).contains("policy.repos"));
    let open_repos = Policy::new(&PolicyConfig {
        repos: vec!["https://x/*".into()],
        ..Default::default()
    })
    .expect("compiles");
    let err = denial(&open_repos, plan("https://x/y.git", "test", "prod"));
    assert!(err.contains("policy.images lists none"), "{err}");
    let err = denial(&open_repos, command_plan("true"));
    assert!(err.contains("policy.commands lists none"), "{err}");
    let err = denial(&open_repos, none_plan());
    assert!(err.contains("allowNoTests"), "{err}");
}

#[test]
fn permissive_mode_allows_what_the_lists_leave_open() {
    let p = Policy::new(&PolicyConfig {
        permissive: true,
        ..Default::default()
    })
    .expect("compiles");
    assert!(p.is_permissive());
    let none = CredentialScopes::default();
    p.admit(plan("https://x/y.git", "test", "prod"), &none)
        .expect("open");
    p.admit(none_plan(), &none).expect("no tests");
}

#[test]
fn a_credential_scope_names_a_repo_for_the_policy() {
    let p = Policy::new(&PolicyConfig {
        allow_no_tests: true,
        ..Default::default()
    })
    .expect("compiles");
    let scopes = CredentialScopes::single(
        "https://x",
        crate::credentials::Credentials {
            username: "u".into(),
            password: crate::credentials::Secret::new("p"),
            email: None,
        },
        false,
    )
    .expect("scope");
    p.admit(none_plan(), &scopes).expect("named by the scope");
}

#[test]
fn refuses_repos_transitions_and_images_outside_the_lists() {
    let p = Policy::new(&PolicyConfig {
        repos: vec!["https://git.example.com/org/*".into()],
        test_targets: vec!["http://app.test".into()],
        transitions: vec!["dev->test".into(), "test->prod".into()],
        images: vec!["registry.example.com/*".into()],
        ..Default::default()
    })
    .expect("compiles");
    let err = denial(&p, plan("https://other.com/x.git", "test", "prod"));
    assert!(err.contains("repository"), "{err}");
    let err = denial(
        &p,
        plan("https://git.example.com/org/sub/x.git", "test", "prod"),
    );
    assert!(err.contains("repository"), "a * does not cross /: {err}");
    let err = denial(&p, plan("https://git.example.com/org/a.git", "dev", "prod"));
    assert!(err.contains("dev->prod"), "{err}");
    let err = denial(
        &p,
        plan("https://git.example.com/org/a.git", "test", "prod"),
    );
    assert!(err.contains("evil.io"), "{err}");
    let mut r = resource(
        "https://git.example.com/org/a.git",
        "test",
        "prod",
        job("registry.example.com/tests/deep:1"),
    );
    let err = denial(
        &p,
        Plan::from_resource(&r, &TestProfiles::default()).expect("valid"),
    );
    assert!(err.contains("registry.example.com/tests/deep"), "{err}");
    r.test = job("registry.example.com/tests:1");
    p.admit(
        Plan::from_resource(&r, &TestProfiles::default()).expect("valid"),
        &CredentialScopes::default(),
    )
    .expect("allowed image");
}

#[test]
fn a_test_job_runs_only_in_listed_namespaces_and_as_listed_service_accounts() {
    let p = Policy::new(&PolicyConfig {
        repos: vec!["https://x/*".into()],
        test_targets: vec!["http://app.test".into()],
        images: vec!["tests/*".into()],
        test_namespaces: vec!["tests".into()],
        test_service_accounts: vec!["test-runner".into()],
        ..Default::default()
    })
    .expect("compiles");
    let with = |ns: Option<&str>, sa: Option<&str>| {
        let mut t = job("tests/app:1");
        t.namespace = ns.map(Into::into);
        t.service_account = sa.map(Into::into);
        Plan::from_resource(
            &resource("https://x/y.git", "test", "prod", t),
            &TestProfiles::default(),
        )
        .expect("valid")
    };
    let none = CredentialScopes::default();
    p.admit(with(None, None), &none)
        .expect("own namespace, default SA");
    p.admit(with(Some("tests"), Some("test-runner")), &none)
        .expect("listed");
    let err = denial(&p, with(Some("kube-system"), None));
    assert!(err.contains("test namespace kube-system"), "{err}");
    let err = denial(&p, with(None, Some("phasegate")));
    assert!(err.contains("test service account phasegate"), "{err}");
}

#[test]
fn commands_are_matched_on_their_canonical_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let allowed = dir.path().join("allowed");
    std::fs::create_dir(&allowed).expect("mkdir");
    let script = allowed.join("tests.sh");
    std::fs::write(&script, "#!/bin/sh\n").expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let real = std::fs::canonicalize(&allowed).expect("canonical");
    let p = Policy::new(&PolicyConfig {
        repos: vec!["https://x/*".into()],
        test_targets: vec!["http://app.test".into()],
        commands: vec![format!("{}/*", real.display())],
        ..Default::default()
    })
    .expect("compiles");
    let none = CredentialScopes::default();
    let admitted = p
        .admit(command_plan(&format!("{}/tests.sh", real.display())), &none)
        .expect("allowed");
    let TestPlan::Command(cmd) = admitted.test else {
        panic!("command plan");
    };
    assert_eq!(
        cmd.resolved.as_deref(),
        Some(real.join("tests.sh").as_path())
    );
    // `..` out of the allowed directory, a symlink inside it to /bin/cat, a bare name on PATH.
    let escape = format!("{}/../../../../../../bin/cat", real.display());
    std::os::unix::fs::symlink("/bin/cat", allowed.join("cat")).expect("symlink");
    for program in [escape, format!("{}/cat", real.display()), "cat".into()] {
        let err = denial(&p, command_plan(&program));
        let shell = std::fs::canonicalize("/bin/cat").expect("cat");
        let named = format!("test command {program} resolved to {} ", shell.display());
        assert!(err.contains(&named), "{program}: {err}");
    }
    let err = denial(&p, command_plan("/nonexistent/tests.sh"));
    assert!(err.contains("not an executable file"), "{err}");
}

#[test]
fn refuses_an_unmerged_source_unless_the_operator_allows_it() {
    let allowed = PolicyConfig {
        repos: vec!["https://x/*".into()],
        test_targets: vec!["http://app.test".into()],
        images: vec!["**".into()],
        ..PolicyConfig::default()
    };
    let mut unmerged = plan("https://x/y.git", "test", "prod");
    unmerged.allow_unmerged_source = true;
    let closed = Policy::new(&allowed).expect("compiles");
    let err = denial(&closed, unmerged.clone());
    assert!(err.contains("allowUnmergedSource"), "{err}");
    let open = Policy::new(&PolicyConfig {
        allow_unmerged_source: true,
        ..allowed
    })
    .expect("compiles");
    open.admit(unmerged, &CredentialScopes::default())
        .expect("allowed by the operator");
}

#[test]
fn files_rules_list_both_sides_of_a_key_pair_and_the_source_path() {
    let rule = |keys: &[&str]| FileRule {
        repos: vec!["https://x/*".into()],
        paths: vec!["helm/*.yaml".into(), "k/*/kustomization.yaml".into()],
        keys: keys.iter().map(|k| k.to_string()).collect(),
    };
    let mut r = resource(
        "https://x/y.git",
        "test",
        "prod",
        TestSpec {
            runner: Some(RunnerKind::None),
            ..Default::default()
        },
    );
    r.path = "k/{phase}/kustomization.yaml".into();
    r.source.path = "helm/values-{phase}.yaml".into();
    r.keys = vec!["image.tag->images[name=app].newTag".into()];
    let plan = |r: &Resource| Plan::from_resource(r, &TestProfiles::default()).expect("valid");
    let none = CredentialScopes::default();
    let policy = |keys: &[&str]| {
        Policy::new(&PolicyConfig {
            allow_no_tests: true,
            repos: vec!["https://x/*".into()],
            files: vec![rule(keys)],
            ..Default::default()
        })
        .expect("compiles")
    };
    // In a glob `[` opens a class: `[[]` is a literal one.
    policy(&["image.tag", "images[[]name=app].newTag"])
        .admit(plan(&r), &none)
        .expect("both sides listed");
    let err = policy(&["images[[]name=app].newTag"])
        .admit(plan(&r), &none)
        .expect_err("the source key is not listed")
        .to_string();
    assert!(err.contains("image.tag->images[name=app].newTag"), "{err}");
    r.source.path = "other/values-{phase}.yaml".into();
    let err = policy(&[])
        .admit(plan(&r), &none)
        .expect_err("the source file is not listed")
        .to_string();
    assert!(err.contains("other/values-test.yaml"), "{err}");
}
