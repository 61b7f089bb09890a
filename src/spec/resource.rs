//! [`Resource`]: the JSON object FetchResource answers and Execute receives.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    Plan, SpecError, bounds,
    controls::check_controls,
    forge::{ForgeSpec, PullRequestSpec},
    keys,
    payload::EventData,
};

/// The default subject of a promotion commit (docs/contract.md §5).
pub(super) const DEFAULT_COMMIT_MESSAGE: &str = "Promote {key} {version} from {source} to {target}";

/// Largest resource read: a filled-in spec is a few KiB; Sensor parameters add little.
const MAX_RESOURCE_BYTES: usize = 1024 * 1024;

/// Which test runner a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunnerKind {
    /// A Kubernetes Job running the test image.
    Job,
    /// The built-in HTTP check.
    Http,
    /// A local process.
    Command,
    /// No tests: promote at once (must be asked for explicitly).
    None,
}

/// `sync` answers when the run ends; `async` answers `accepted` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Execute returns when the run ends.
    #[default]
    Sync,
    /// Execute returns `accepted` at once and the run goes on.
    Async,
}

/// The phase whose deployment is tested, and the commit that deployed it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceRef {
    /// Source phase name (`test`).
    pub phase: String,
    /// The GitOps commit Argo CD synced to the source phase.
    pub commit: String,
    /// The source phase's values file, when it is not `path`'s (a Helm values file promoted
    /// into a kustomization): a path template with `{phase}`; empty: `path`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
}

/// The phase that receives the tested version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetRef {
    /// Target phase name (`prod`); empty means "the phase after the source".
    pub phase: String,
}

/// How the source phase is tested. Runner-specific fields are absent for other runners.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct TestSpec {
    /// The operator's test profile (`testProfile`): it sets everything but the target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The runner; `None` only before inference, and with a profile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner: Option<RunnerKind>,
    /// URL of the deployment under test; `{target}` in args expands to it.
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Command runner: the directory the command starts in (absolute).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Value>,
    /// Job runner: the test container's securityContext, merged over the Pod Security
    /// "restricted" default ([`crate::spec::container_context`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_context: Option<Value>,
    /// Job runner: the pod's securityContext, merged over the Pod Security "restricted"
    /// default ([`crate::spec::pod_context`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_security_context: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect_body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
}

impl TestSpec {
    /// Fills the defaults of the chosen runner (docs/contract.md §2), so the resource shows them.
    pub(super) fn fill_defaults(&mut self) {
        match self.runner {
            // Both run `<command> <test target>`, as the classic test step did.
            Some(RunnerKind::Job | RunnerKind::Command) => {
                self.args.get_or_insert_with(default_args);
                self.timeout.get_or_insert_with(|| "10m".into());
            }
            Some(RunnerKind::Http) => {
                self.path.get_or_insert_with(|| "/".into());
                self.expect_status.get_or_insert(200);
                self.attempts.get_or_insert(3);
                self.interval.get_or_insert_with(|| "500ms".into());
            }
            Some(RunnerKind::None) | None => {}
        }
    }
}

/// The arguments of the Job and command runners when the spec gives none: the classic test step
/// ran `<testCommand> <test_target>`, so `./launchTests.sh` gets the target as `$1`.
pub(super) fn default_args() -> Vec<String> {
    vec!["{target}".into()]
}

/// The Argo CD gate as the resource carries it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArgoSpec {
    /// `name` or `namespace/name` of the Application (namespace `argocd` by default).
    pub app: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// The resource of docs/contract.md §3: the spec with every default filled in, nested so Sensor
/// parameters have stable `dest` paths (`source.commit`, `test.target`, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Resource {
    pub repo: String,
    pub branch: String,
    pub path: String,
    pub keys: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    pub phases: Vec<String>,
    pub source: SourceRef,
    pub target: TargetRef,
    pub test: TestSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argocd: Option<ArgoSpec>,
    pub commit_message: String,
    pub dry_run: bool,
    /// A deliberate rollback: promote an older version on purpose (see docs/git.md).
    pub rollback: bool,
    /// Promote a source commit that is not on `branch` (teams promoting from other branches);
    /// only honoured where the server policy allows it (see docs/events.md).
    pub allow_unmerged_source: bool,
    pub mode: Mode,
    /// `push` or `pull-request`.
    pub promote_via: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forge: Option<ForgeSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<PullRequestSpec>,
}

impl Default for Resource {
    fn default() -> Self {
        Resource {
            repo: String::new(),
            branch: "main".into(),
            path: String::new(),
            keys: vec!["image.version".into()],
            credentials_secret: None,
            phases: Vec::new(),
            source: SourceRef::default(),
            target: TargetRef::default(),
            test: TestSpec::default(),
            argocd: None,
            commit_message: DEFAULT_COMMIT_MESSAGE.into(),
            dry_run: false,
            rollback: false,
            allow_unmerged_source: false,
            mode: Mode::Sync,
            promote_via: "push".into(),
            forge: None,
            pull_request: None,
        }
    }
}

impl Resource {
    /// Parses the Sensor's `custom.spec` YAML, fills defaults and infers the runner, and checks
    /// every field that is set. Per-event fields (commit, phases, target URL) may still be empty.
    pub fn from_spec_yaml(yaml: &[u8]) -> Result<Resource, SpecError> {
        let doc: serde_yaml_ng::Value =
            serde_yaml_ng::from_slice(yaml).map_err(|e| SpecError::NotYaml(e.to_string()))?;
        let map = match doc {
            serde_yaml_ng::Value::Mapping(m) => m,
            serde_yaml_ng::Value::Null => serde_yaml_ng::Mapping::new(),
            serde_yaml_ng::Value::Sequence(_) => return Err(SpecError::NotMap("a list")),
            serde_yaml_ng::Value::Tagged(_) => return Err(SpecError::NotMap("a tagged value")),
            _ => return Err(SpecError::NotMap("a single value")),
        };
        let json = keys::to_json(map)?;
        bounds::texts(&json).map_err(keys::spec_named)?;
        check_controls(&json).map_err(keys::spec_named)?;
        let mut resource = deserialize(json).map_err(keys::spec_named)?;
        Plan::check_static(&resource).map_err(keys::spec_named)?;
        resource.infer_runner().map_err(keys::spec_named)?;
        resource.test.fill_defaults();
        Plan::check_test(&resource).map_err(keys::spec_named)?;
        Ok(resource)
    }

    /// Parses the resource JSON handed to Execute and applies the payload's event data over it.
    ///
    /// The resource is the operator's configuration: FetchResource's answer, changed by the
    /// Sensor's parameters, which whoever writes the Sensor chose. Since a parameter may have
    /// changed any field, nothing of FetchResource's checks is assumed: an unknown field is
    /// refused, and [`Plan::from_resource`] and the policy check every field again. The payload
    /// is the event's and may set only the four event fields ([`EventData`]); see
    /// docs/contract.md §4 and docs/events.md.
    pub fn from_execute(resource: &[u8], payload: &[u8]) -> Result<Resource, SpecError> {
        if resource.len() > MAX_RESOURCE_BYTES {
            return Err(SpecError::BadResource(format!(
                "it is {} bytes, more than {MAX_RESOURCE_BYTES}",
                resource.len()
            )));
        }
        let mut json: Value =
            serde_json::from_slice(resource).map_err(|e| SpecError::BadResource(e.to_string()))?;
        if !json.is_object() {
            return Err(SpecError::BadResource("not a JSON object".into()));
        }
        for (path, value) in EventData::parse(payload)?.fields() {
            keys::set_path(&mut json, path, Value::String(value.into()));
        }
        bounds::texts(&json)?;
        check_controls(&json)?;
        let mut resource = deserialize(json)?;
        resource.infer_runner()?;
        resource.test.fill_defaults();
        Ok(resource)
    }

    /// The resource as the JSON bytes FetchResource answers.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a Resource always serialises")
    }

    /// Chooses the runner when the spec did not: `job` with an image, `http` with a target.
    fn infer_runner(&mut self) -> Result<(), SpecError> {
        if self.test.runner.is_some() || self.test.profile.is_some() {
            return Ok(());
        }
        self.test.runner = if self.test.image.is_some() {
            Some(RunnerKind::Job)
        } else if !self.test.target.is_empty() {
            Some(RunnerKind::Http)
        } else {
            return Err(SpecError::invalid(
                "test.runner",
                "no runner set and none can be inferred: name the operator's testProfile, or set \
                 testImage (job), testTarget (http), or test: none to skip tests explicitly",
            ));
        };
        Ok(())
    }
}

/// Deserialises a resource, naming the field that has the wrong type.
fn deserialize(json: Value) -> Result<Resource, SpecError> {
    serde_path_to_error::deserialize(json)
        .map_err(|e| SpecError::invalid(&e.path().to_string(), e.inner().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> Result<Resource, SpecError> {
        Resource::from_spec_yaml(yaml.as_bytes())
    }

    const GO_YAML: &str = "credentialsSecret: github-credentials\n\
        key: image.version\n\
        path: apps/{phase}/values-{phase}.yaml\n\
        phases: test,prod\n\
        repo: https://git.example.com/org/gitops.git\n\
        testAttempts: \"3\"\n\
        testCommand: ./launchTests.sh\n\
        testImage: registry.example.com/petstore-tests:1.2\n\
        dryRun: \"false\"\n";

    #[test]
    fn fills_defaults_and_nests_the_go_yaml_spec() {
        let r = spec(GO_YAML).expect("valid spec");
        let json: Value = serde_json::from_slice(&r.to_json()).expect("json");
        assert_eq!(json["branch"], "main");
        assert_eq!(json["keys"], serde_json::json!(["image.version"]));
        assert_eq!(json["phases"], serde_json::json!(["test", "prod"]));
        assert_eq!(json["source"]["commit"], "");
        assert_eq!(json["target"]["phase"], "");
        assert_eq!(json["test"]["runner"], "job");
        assert_eq!(
            json["test"]["command"],
            serde_json::json!(["./launchTests.sh"])
        );
        assert_eq!(json["test"]["args"], serde_json::json!(["{target}"]));
        assert_eq!(json["test"]["timeout"], "10m");
        assert_eq!(json["commitMessage"], DEFAULT_COMMIT_MESSAGE);
        assert_eq!(json["mode"], "sync");
    }

    #[test]
    fn reads_block_scalars_and_json_values() {
        let r = spec(
            "repo: file:///tmp/x\npath: a/{phase}.yaml\ntest: command\n\
             testCommand: |-\n  [\"sh\", \"-c\",\n   \"exit 0\"]\ntestEnv: '{\"A\": \"b: c\"}'\n",
        )
        .expect("valid");
        assert_eq!(r.test.command, vec!["sh", "-c", "exit 0"]);
        assert_eq!(r.test.env.expect("env")["A"], "b: c");
    }

    const COMMAND_SPEC: &str = "repo: file:///r\npath: a/{phase}.yaml\ntest: command\n\
        sourcePhase: test\ntargetPhase: prod\nsourceCommit: abcdef1\n\
        testTarget: http://petstore.test:8080\ntestCommand: ./launchTests.sh\n";

    /// The command runner's plan of `COMMAND_SPEC` with `extra` keys (a `testCommand` in them
    /// replaces the spec's).
    fn command_plan(extra: &str) -> Result<crate::spec::CommandTest, SpecError> {
        let base = if extra.contains("testCommand:") {
            COMMAND_SPEC.replace("testCommand: ./launchTests.sh\n", "")
        } else {
            COMMAND_SPEC.to_string()
        };
        let r = spec(&format!("{base}{extra}"))?;
        let r = Resource::from_execute(&r.to_json(), b"")?;
        match Plan::from_resource(&r, &crate::spec::TestProfiles::default())?.test {
            crate::spec::TestPlan::Command(c) => Ok(c),
            other => panic!("not the command runner: {other:?}"),
        }
    }

    #[test]
    fn the_command_runner_gets_the_target_as_its_argument_like_the_job_runner() {
        let json: Value =
            serde_json::from_slice(&spec(COMMAND_SPEC).expect("valid").to_json()).expect("json");
        assert_eq!(json["test"]["args"], serde_json::json!(["{target}"]));
        let c = command_plan("").expect("valid");
        assert_eq!(c.argv, ["./launchTests.sh", "http://petstore.test:8080"]);
        let c = command_plan("testArgs: '[\"--suite\", \"smoke\"]'\n").expect("valid");
        assert_eq!(c.argv, ["./launchTests.sh", "--suite", "smoke"]);
    }

    #[test]
    fn a_relative_command_belongs_to_the_working_directory() {
        let c = command_plan("testWorkdir: /opt/tests/petstore\n").expect("valid");
        assert_eq!(
            c.workdir.as_deref(),
            Some(std::path::Path::new("/opt/tests/petstore"))
        );
        assert_eq!(
            c.program(),
            std::path::Path::new("/opt/tests/petstore/launchTests.sh")
        );
        let c = command_plan("testWorkdir: /opt/tests/petstore\ntestCommand: ../../../bin/cat\n")
            .expect("valid");
        assert_eq!(
            c.program(),
            std::path::Path::new("/bin/cat"),
            "what the policy sees"
        );
        let c = command_plan("testWorkdir: /opt/tests\ntestCommand: robot\n").expect("valid");
        assert_eq!(
            c.program(),
            std::path::Path::new("robot"),
            "a bare name is found on PATH"
        );
    }

    #[test]
    fn refuses_a_working_directory_that_is_relative_escapes_or_has_no_runner() {
        for (workdir, problem) in [
            ("tests/petstore", "absolute"),
            ("/opt/tests/../../etc", "'..'"),
            ("/opt/./tests", "'..'"),
        ] {
            let err = command_plan(&format!("testWorkdir: {workdir}\n"))
                .expect_err(workdir)
                .to_string();
            assert!(
                err.contains("testWorkdir") && err.contains(problem),
                "{workdir}: {err}"
            );
        }
        let err =
            spec("repo: file:///r\npath: a/{phase}.yaml\ntestImage: tests:1\ntestWorkdir: /t\n")
                .expect_err("job runner")
                .to_string();
        assert!(
            err.contains("testWorkdir") && err.contains("WORKDIR"),
            "{err}"
        );
    }

    #[test]
    fn treats_an_empty_map_as_missing_repo() {
        let err = spec("{}").expect_err("no repo").to_string();
        assert!(err.contains("`repo`"), "{err}");
    }

    #[test]
    fn keeps_list_keys_and_source_target_pairs_as_written() {
        let r = spec(
            "repo: file:///r\npath: a/{phase}.yaml\ntest: none\n\
             key: 'image.tag -> images[name=petstore].newTag, ports[0].containerPort'\n",
        )
        .expect("valid");
        assert_eq!(
            r.keys,
            [
                "image.tag -> images[name=petstore].newTag",
                "ports[0].containerPort"
            ]
        );
        for (key, says) in [
            ("images[name=]", "has no value"),
            ("a->b..c", "empty segment"),
            ("ports[x]", "neither an index"),
        ] {
            let err = spec(&format!(
                "repo: file:///r\npath: a/{{phase}}.yaml\ntest: none\nkey: '{key}'\n"
            ))
            .expect_err(key)
            .to_string();
            assert!(err.contains("`key`") && err.contains(says), "{key}: {err}");
        }
    }

    #[test]
    fn a_source_path_names_the_source_phase_file_apart() {
        let base = "repo: file:///r\npath: k/{phase}/kustomization.yaml\ntest: none\n";
        let r = spec(&format!("{base}sourcePath: helm/values-{{phase}}.yaml\n")).expect("valid");
        assert_eq!(r.source.path, "helm/values-{phase}.yaml");
        for bad in ["/etc/values.yaml", "helm/values.yaml", "../{phase}.yaml"] {
            let err = spec(&format!("{base}sourcePath: '{bad}'\n"))
                .expect_err(bad)
                .to_string();
            assert!(err.contains("`sourcePath`"), "{bad}: {err}");
        }
    }

    #[test]
    fn names_the_key_of_every_bad_spec() {
        let base = "repo: file:///r\npath: a/{phase}.yaml\ntest: none\n";
        for (extra, key) in [
            ("sourcePhase: ../x\n", "sourcePhase"),
            ("sourceCommit: xyz\n", "sourceCommit"),
            ("test: bogus\n", "test"),
            ("dryRun: maybe\n", "dryRun"),
            ("testArgs: not-json\n", "testArgs"),
            ("testTimeout: forever\n", "testTimeout"),
            ("testimage: x\n", "testimage"),
        ] {
            let yaml = if extra.starts_with("test:") {
                base.replace("test: none\n", extra)
            } else {
                format!("{base}{extra}")
            };
            let err = spec(&yaml).expect_err(extra).to_string();
            assert!(err.contains(key), "{extra}: {err}");
        }
    }

    #[test]
    fn refuses_specs_that_are_not_maps() {
        assert!(matches!(spec("[a, b]"), Err(SpecError::NotMap(_))));
        assert!(matches!(spec("just text"), Err(SpecError::NotMap(_))));
        assert!(matches!(spec("a: [unclosed"), Err(SpecError::NotYaml(_))));
        assert!(matches!(
            spec("repo: {a: b}"),
            Err(SpecError::Invalid { .. })
        ));
    }

    #[test]
    fn requires_an_explicit_runner_when_none_can_be_inferred() {
        let err = spec("repo: file:///r\npath: a/{phase}.yaml\n").expect_err("no runner");
        assert!(err.to_string().contains("test: none"), "{err}");
    }

    #[test]
    fn applies_flat_and_nested_payload_fields() {
        let r = spec(GO_YAML).expect("valid");
        let payload = br#"{"test_target":"http://petstore.test:8080","source_commit":"abcdef1",
                          "source":{"phase":"test"}}"#;
        let r = Resource::from_execute(&r.to_json(), payload).expect("payload applies");
        assert_eq!(r.test.target, "http://petstore.test:8080");
        assert_eq!(r.source.commit, "abcdef1");
        assert_eq!(r.source.phase, "test");
        assert_eq!(r.test.runner, Some(RunnerKind::Job));
    }

    #[test]
    fn refuses_unknown_fields_in_the_resource_by_path() {
        let r = spec(GO_YAML).expect("valid");
        let mut json: Value = serde_json::from_slice(&r.to_json()).expect("json");
        json["test"]["privileged"] = Value::Bool(true);
        let err = Resource::from_execute(&serde_json::to_vec(&json).expect("json"), b"")
            .expect_err("unknown field");
        assert!(err.to_string().contains("privileged"), "{err}");
        for (object, field) in [("forge", "tokenUrl"), ("pullRequest", "reviewers")] {
            let mut json: Value = serde_json::from_slice(&r.to_json()).expect("json");
            json[object] = serde_json::json!({ field: "x" });
            let err = Resource::from_execute(&serde_json::to_vec(&json).expect("json"), b"")
                .expect_err("unknown field");
            assert!(
                err.to_string().contains(&format!("{object}.{field}")),
                "{err}"
            );
        }
        let huge = vec![b' '; MAX_RESOURCE_BYTES + 1];
        assert!(matches!(
            Resource::from_execute(&huge, b""),
            Err(SpecError::BadResource(_))
        ));
    }

    #[test]
    fn accepts_a_payload_that_is_a_json_string_holding_an_object() {
        let r = spec(GO_YAML).expect("valid");
        let payload =
            serde_json::to_vec(&Value::String(r#"{"source_phase":"test"}"#.into())).expect("json");
        let r = Resource::from_execute(&r.to_json(), &payload).expect("applies");
        assert_eq!(r.source.phase, "test");
    }

    #[test]
    fn refuses_payloads_that_are_not_objects() {
        let r = spec(GO_YAML).expect("valid").to_json();
        for payload in [&b"not json"[..], b"[1]", b"\"[1]\"", b"42"] {
            let err = Resource::from_execute(&r, payload).expect_err("bad payload");
            assert!(matches!(err, SpecError::BadPayload(_)), "{err}");
        }
        let err = Resource::from_execute(&r, br#"{"source":"x"}"#).expect_err("wrong type");
        assert!(err.to_string().contains("source"), "{err}");
    }
}
