use super::*;
use crate::spec::{RunnerKind, TestProfiles};

fn resource() -> Resource {
    Resource {
        repo: "https://git.example.com/gitops.git".into(),
        path: "apps/{phase}/values.yaml".into(),
        phases: vec!["dev".into(), "test".into(), "prod".into()],
        source: crate::spec::SourceRef {
            phase: "test".into(),
            path: String::new(),
            commit: "ABCDEF1234".into(),
        },
        test: crate::spec::TestSpec {
            runner: Some(RunnerKind::None),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[test]
fn derives_the_target_from_the_phase_chain() {
    let plan = Plan::from_resource(&resource(), &TestProfiles::default()).expect("valid");
    assert_eq!(plan.target.as_str(), "prod");
    assert_eq!(plan.commit.as_str(), "abcdef1234");
}

#[test]
fn refuses_to_promote_from_the_last_phase() {
    let mut r = resource();
    r.source.phase = "prod".into();
    let err = Plan::from_resource(&r, &TestProfiles::default())
        .expect_err("last phase")
        .to_string();
    assert!(err.contains("last phase"), "{err}");
}

#[test]
fn refuses_paths_that_escape_the_repository() {
    for path in [
        "../{phase}.yaml",
        "/etc/{phase}",
        "a/./{phase}",
        "a//{phase}",
        "a/b.yaml",
    ] {
        let mut r = resource();
        r.path = path.into();
        let err = Plan::from_resource(&r, &TestProfiles::default())
            .expect_err(path)
            .to_string();
        assert!(err.contains("`path`"), "{path}: {err}");
    }
}

#[test]
fn refuses_repo_urls_with_credentials_without_echoing_them() {
    for url in [
        "https://user:s3cret-token@host/x.git",
        "https://s3cret-token@host/x.git",
    ] {
        let err = RepoUrl::parse(url).expect_err(url).to_string();
        assert!(!err.contains("s3cret"), "{err}");
        assert!(err.contains("credentials"), "{err}");
    }
    for ok in [
        "git@github.com:org/repo.git",
        "ssh://git@host/x.git",
        "file:///tmp/x",
    ] {
        RepoUrl::parse(ok).expect(ok);
    }
    assert!(RepoUrl::parse("ftp://host/x").is_err());
}

#[test]
fn refuses_bad_phases_and_commits() {
    for (phase, commit) in [("../x", "abcdef1"), ("Test", "abcdef1"), ("test", "xyz")] {
        let mut r = resource();
        r.source.phase = phase.into();
        r.source.commit = commit.into();
        assert!(
            Plan::from_resource(&r, &TestProfiles::default()).is_err(),
            "{phase} {commit}"
        );
    }
}

#[test]
fn bounds_every_duration() {
    for (field, bad) in [
        ("test.timeout", "500000000000y"),
        ("test.timeout", "25h"),
        ("test.interval", "11m"),
        ("argocd.timeout", "2days"),
    ] {
        let err = duration(field, bad).expect_err(bad).to_string();
        assert!(err.contains(field) && err.contains("out of range"), "{err}");
    }
    assert_eq!(
        duration("test.timeout", "24h").expect("max"),
        Duration::from_secs(86400)
    );
    assert_eq!(
        duration("test.interval", "0s").expect("min"),
        Duration::ZERO
    );
}

#[test]
fn expands_the_target_in_job_args() {
    let mut r = resource();
    r.test = crate::spec::TestSpec {
        runner: Some(RunnerKind::Job),
        image: Some("tests:1".into()),
        target: "http://app.test".into(),
        ..Default::default()
    };
    let TestPlan::Job(job) = Plan::from_resource(&r, &TestProfiles::default())
        .expect("valid")
        .test
    else {
        panic!("job runner expected");
    };
    assert_eq!(job.args, vec!["http://app.test"]);
    assert_eq!(job.timeout, Duration::from_secs(600));
}
