use super::*;

fn pr(spec: PullRequestSpec) -> Result<PromoteVia, SpecError> {
    promote_via(&Resource {
        promote_via: "pull-request".into(),
        pull_request: Some(spec),
        ..Default::default()
    })
}

fn refused(result: Result<impl fmt::Debug, SpecError>, key: &str, why: &str) {
    let err = result.expect_err(why).to_string();
    assert!(err.contains(key) && err.contains(why), "{err}");
}

#[test]
fn refuses_labels_that_are_blank_long_or_would_split() {
    let cases = [
        ("", "1 to 50"),
        ("  ", "1 to 50"),
        (&*"x".repeat(51), "1 to 50"),
        ("release,hotfix", "comma"),
        ("release\nhotfix", "control"),
    ];
    for (label, why) in cases {
        let spec = PullRequestSpec {
            labels: vec![label.into()],
            ..Default::default()
        };
        refused(pr(spec), "pullRequest.labels", why);
    }
    let spec = PullRequestSpec {
        labels: vec!["release".into(), "team: payments".into()],
        ..Default::default()
    };
    assert!(matches!(pr(spec), Ok(PromoteVia::PullRequest(p)) if p.labels.len() == 2));
}

#[test]
fn refuses_unknown_merge_methods_and_waits_out_of_range() {
    let method = PullRequestSpec {
        merge_method: Some("fast-forward".into()),
        ..Default::default()
    };
    refused(
        pr(method),
        "pullRequest.mergeMethod",
        "not merge, squash or rebase",
    );
    for (wait, why) in [
        ("0s", "between 1s and 24h"),
        ("25h", "at most 1day"),
        ("soon", "not a duration"),
    ] {
        let spec = PullRequestSpec {
            wait_for_merge: Some(wait.into()),
            ..Default::default()
        };
        refused(pr(spec), "pullRequest.waitForMerge", why);
    }
}

#[test]
fn refuses_pull_request_keys_in_push_mode_and_unknown_modes() {
    let r = Resource {
        promote_via: "push".into(),
        pull_request: Some(PullRequestSpec {
            draft: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    refused(promote_via(&r), "promoteVia", "pull-request keys");
    let r = Resource {
        promote_via: "merge".into(),
        ..Default::default()
    };
    refused(promote_via(&r), "promoteVia", "not push or pull-request");
}

#[test]
fn refuses_unknown_forges_and_api_urls_that_are_not_plain_http() {
    let choice = |kind: Option<&str>, url: Option<&str>| {
        forge_choice(&Resource {
            forge: Some(ForgeSpec {
                kind: kind.map(Into::into),
                api_url: url.map(Into::into),
            }),
            ..Default::default()
        })
    };
    refused(choice(Some("sourcehut"), None), "forge", "is not a forge");
    refused(
        choice(None, Some("ftp://git.example/api")),
        "forgeApiUrl",
        "http(s) URL",
    );
    refused(choice(None, Some("/api/v4")), "forgeApiUrl", "http(s) URL");
    let err = choice(None, Some("https://bot:s3cret@git.example/api/v4"))
        .expect_err("credentials")
        .to_string();
    assert!(err.contains("must not carry credentials"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    for api in [
        "https://git.example/api/v4?x=1",
        "https://git.example/api/v4#f",
    ] {
        refused(choice(None, Some(api)), "forgeApiUrl", "query or fragment");
    }
    let ok = choice(Some("gitlab"), Some("https://git.example/api/v4")).expect("valid");
    assert_eq!(ok.kind, Some(ForgeKind::GitLab));
}

#[test]
fn refuses_what_the_located_forge_cannot_do() {
    let repo = |u: &str| RepoUrl::parse(u).expect(u);
    let via = |plan: PullRequestPlan| PromoteVia::PullRequest(plan);
    let rebase = via(PullRequestPlan {
        merge_method: MergeMethod::Rebase,
        ..Default::default()
    });
    let gitlab = repo("https://gitlab.com/group/gitops.git");
    let none = ForgeChoice::default();
    refused(
        located(&gitlab, &none, &rebase),
        "mergeMethod",
        "merge method setting",
    );
    let github = repo("https://github.com/org/gitops.git");
    assert!(located(&github, &none, &rebase).is_ok());
    let labelled = via(PullRequestPlan {
        labels: vec!["prod".into()],
        ..Default::default()
    });
    let bitbucket = ForgeChoice {
        kind: Some(ForgeKind::BitbucketDataCenter),
        api_url: None,
    };
    let scm = repo("https://bitbucket.example.com/scm/plat/gitops.git");
    refused(
        located(&scm, &bitbucket, &labelled),
        "prLabels",
        "have no labels",
    );
    let elsewhere = repo("https://git.example.com/org/gitops.git");
    refused(
        located(&elsewhere, &none, &labelled),
        "pull-request",
        "needs a forge",
    );
    assert_eq!(
        located(&elsewhere, &none, &PromoteVia::Push).ok(),
        Some(None)
    );
    let not_owner_name = repo("https://github.com/a/b/c.git");
    assert_eq!(
        located(&not_owner_name, &none, &PromoteVia::Push).ok(),
        Some(None)
    );
}
