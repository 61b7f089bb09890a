//! The manifests in `deploy/`: every kustomization renders with `kubectl kustomize` and
//! validates offline against the Kubernetes schemas (`kubernetes-validate`, installed by the
//! test command); what the schemas cannot check — Argo CRDs and phasegate's own settings — is
//! checked here: the Sensor's spec is one phasegate accepts, and the pieces point at each other.

use std::{collections::BTreeMap, path::Path, process::Command};

use phasegate::{
    config::Config,
    credentials::github_app::{BadAppField, GitHubApp},
    sensor::go_yaml,
    spec::{Plan, Resource},
};
use serde_yaml_ng::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

pub(crate) fn render(dir: &str) -> String {
    let out = Command::new("kubectl")
        .args(["kustomize", &format!("{ROOT}/deploy/{dir}")])
        .output()
        .expect("kubectl must be installed (kubectl kustomize needs no cluster)");
    assert!(
        out.status.success(),
        "{dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

fn validate(name: &str, yaml: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join(format!("{}.yaml", name.replace('/', "-")));
    std::fs::write(&file, yaml).expect("write");
    let out = Command::new("kubernetes-validate")
        .args(["--quiet", "--strict"])
        .arg(&file)
        .output()
        .expect("kubernetes-validate must be installed: run the README's test command");
    assert!(
        out.status.success(),
        "{name} does not validate:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
        .collect()
}

pub(crate) fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

fn example(name: &str) -> Value {
    let text = std::fs::read_to_string(Path::new(ROOT).join("deploy/examples").join(name))
        .expect("example");
    serde_yaml_ng::from_str(&text).expect("YAML")
}

/// The resource phasegate makes of a Sensor trigger's `custom` section, sent to its Service.
fn accepted(custom: &Value) -> Resource {
    assert_eq!(custom["serverURL"], "phasegate.argo-events.svc:9000");
    let spec: BTreeMap<String, String> =
        serde_yaml_ng::from_value(custom["spec"].clone()).expect("spec is a map of strings");
    Resource::from_spec_yaml(go_yaml(&spec).as_bytes()).expect("phasegate accepts the spec")
}

/// The server configuration of `deploy/base`'s ConfigMap, as phasegate reads it.
fn config_map(docs: &[Value]) -> Config {
    let config = find(docs, "ConfigMap")["data"]["config.yaml"]
        .as_str()
        .expect("config")
        .to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("config.yaml"), config).expect("write");
    Config::load(Some(&dir.path().join("config.yaml"))).expect("phasegate reads its ConfigMap")
}

#[test]
fn the_example_sensors_test_with_the_config_maps_profile_and_only_at_its_targets() {
    let config = config_map(&documents(&render("base")));
    let policy = phasegate::app::policy(&config).expect("the profiles compile");
    let scopes = phasegate::credentials::CredentialScopes::default();
    for (sensor, secret) in [
        ("sensor.yaml", "github-credentials.yaml"),
        ("sensor-pull-request.yaml", "github-app-credentials.yaml"),
        ("sensor-sources.yaml", "github-credentials.yaml"),
    ] {
        let custom = &example(sensor)["spec"]["triggers"][0]["template"]["custom"];
        let resource = accepted(custom);
        // Its Secret is for the Sensor's repository (Argo CD's `url` key).
        let secret = example(secret);
        assert_eq!(
            resource.credentials_secret.as_deref(),
            secret["metadata"]["name"].as_str()
        );
        let url = secret["stringData"]["url"].as_str().expect("url");
        let repo = phasegate::spec::RepoUrl::parse(&resource.repo).expect("repo");
        let covered = phasegate::credentials::url_covers(url, &repo).ok();
        assert_eq!(covered, Some(true), "{url} covers {repo}");
        assert!(
            resource.test.profile.is_some(),
            "{sensor} names a test profile"
        );
        // The classic notification of petstore-test, as deploy/examples forwards it.
        let event = |target: &str| {
            let payload = serde_json::json!({"source_commit": "abcdef1", "source_phase": "test",
                                             "test_target": target});
            let r = Resource::from_execute(&resource.to_json(), payload.to_string().as_bytes())
                .expect("the event applies");
            Plan::from_resource(&r, policy.profiles()).expect("a plan")
        };
        let plan = policy
            .admit(event("http://petstore.petstore-test.svc:8080"), &scopes)
            .expect("the example event is admitted");
        assert_eq!(plan.test.runner(), "job", "{sensor}");
        let err = policy
            .admit(event("http://kubernetes.default.svc:443"), &scopes)
            .expect_err("another target");
        assert!(err.to_string().contains("testTargets"), "{err}");
    }
}

#[test]
fn every_kustomization_renders_and_validates() {
    for dir in ["base", "overlays/tls", "overlays/argocd-gate"] {
        validate(dir, &render(dir));
    }
    for core in [
        "github-credentials.yaml",
        "github-app-credentials.yaml",
        "argocd-notifications-cm.yaml",
        "webhook-auth.yaml",
        "networkpolicy.yaml",
    ] {
        let text = std::fs::read_to_string(Path::new(ROOT).join("deploy/examples").join(core))
            .expect("example");
        validate(core, &text);
    }
}

#[test]
fn the_deployment_is_hardened_and_probed_and_its_config_loads() {
    let docs = documents(&render("base"));
    let deployment = find(&docs, "Deployment");
    assert_eq!(deployment["metadata"]["namespace"], "argo-events");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["livenessProbe"]["grpc"]["port"], 9000);
    assert_eq!(c["readinessProbe"]["grpc"]["service"], "triggers.Trigger");
    let mounts: Vec<&Value> = c["volumeMounts"]
        .as_sequence()
        .expect("mounts")
        .iter()
        .map(|m| &m["mountPath"])
        .collect();
    assert!(
        mounts.iter().any(|m| *m == "/var/cache/phasegate"),
        "cache volume"
    );
    let service = find(&docs, "Service");
    let ports: Vec<i64> = service["spec"]["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .filter_map(|p| p["port"].as_i64())
        .collect();
    assert_eq!(ports, [9000, 9090, 8080]);
    assert!(
        service["spec"]["type"].is_null() || service["spec"]["type"] == "ClusterIP",
        "the console stays inside the cluster"
    );
    assert!(
        !docs.iter().any(|d| d["kind"] == "Ingress"),
        "nothing publishes the console outside the cluster"
    );
    assert!(
        !docs.iter().any(|d| d["kind"] == "ClusterRole"),
        "no cluster-wide rights"
    );

    let loaded = config_map(&docs);
    // The cache is a directory phasegate makes inside the volume, never the volume's root (an
    // emptyDir is root-owned and world-writable: phasegate refuses it as its cache).
    let cache_volume = mounts
        .iter()
        .filter_map(|m| m.as_str())
        .find(|m| *m == "/var/cache/phasegate")
        .expect("the cache volume");
    assert!(
        loaded.cache_dir.starts_with(cache_volume)
            && loaded.cache_dir != std::path::Path::new(cache_volume),
        "{}",
        loaded.cache_dir.display()
    );
    assert_eq!(loaded.listen.port(), 9000);
    assert_eq!(loaded.metrics_listen.map(|a| a.port()), Some(9090));
    assert_eq!(loaded.console_listen.map(|a| a.port()), Some(8080));
    assert!(
        !phasegate::app::policy(&loaded)
            .expect("policy")
            .is_permissive()
    );
}

#[test]
fn the_example_sensor_fires_a_trigger_phasegate_accepts() {
    let sensor = example("sensor.yaml");
    let trigger = &sensor["spec"]["triggers"][0];
    let custom = &trigger["template"]["custom"];
    let resource = accepted(custom);
    assert_eq!(
        resource.credentials_secret.as_deref(),
        Some("github-credentials")
    );
    for p in custom["parameters"].as_sequence().expect("parameters") {
        let dest = p["dest"].as_str().expect("dest");
        assert!(
            [
                "source.commit",
                "source.phase",
                "target.phase",
                "test.target"
            ]
            .contains(&dest),
            "{dest}"
        );
    }
    for p in custom["payload"].as_sequence().expect("payload") {
        let dest = p["dest"].as_str().expect("dest");
        assert!(
            [
                "source_commit",
                "source_phase",
                "target_phase",
                "test_target"
            ]
            .contains(&dest),
            "{dest}"
        );
    }
    assert_eq!(trigger["atLeastOnce"], true);
    assert!(trigger["retryStrategy"]["steps"].as_i64().expect("steps") > 0);
    assert!(trigger["dlqTrigger"]["template"].is_mapping());
    assert_eq!(
        sensor["spec"]["dependencies"][0]["eventSourceName"],
        "argocd"
    );
}

#[test]
fn the_pull_request_sensor_opens_pull_requests_as_the_example_github_app() {
    let sensor = example("sensor-pull-request.yaml");
    let trigger = &sensor["spec"]["triggers"][0];
    let custom = &trigger["template"]["custom"];
    let resource = accepted(custom);
    assert_eq!(resource.promote_via, "pull-request");
    assert_eq!(
        custom["parameters"],
        example("sensor.yaml")["spec"]["triggers"][0]["template"]["custom"]["parameters"],
        "the same event parameters as the push-mode Sensor"
    );
    assert_eq!(trigger["atLeastOnce"], true);
    assert!(trigger["dlqTrigger"]["template"].is_mapping());

    let secret = example("github-app-credentials.yaml");
    assert_eq!(
        resource.credentials_secret.as_deref(),
        secret["metadata"]["name"].as_str(),
        "the Sensor names the App's Secret"
    );
    assert_eq!(
        secret["metadata"]["namespace"],
        sensor["metadata"]["namespace"]
    );
    let data = &secret["stringData"];
    let value = |k: &str| data[k].as_str().unwrap_or_else(|| panic!("key {k}"));
    let key = value("githubAppPrivateKey");
    assert!(key.starts_with("-----BEGIN RSA PRIVATE KEY-----"), "{key}");
    // The ids are ones phasegate reads: only the key is left to replace.
    assert_eq!(
        GitHubApp::new(value("githubAppID"), value("githubAppInstallationID"), key).err(),
        Some(BadAppField::PrivateKey)
    );
}

#[test]
fn the_notification_webhook_event_source_and_application_point_at_each_other() {
    let events = example("eventsource.yaml");
    let cm = example("argocd-notifications-cm.yaml");
    let app = example("application.yaml");
    let sensor = example("sensor.yaml");
    let hook = &events["spec"]["webhook"]["app-synced"];
    let service: Value = serde_yaml_ng::from_str(
        cm["data"]["service.webhook.argo-events"]
            .as_str()
            .expect("service"),
    )
    .expect("YAML");
    let url = service["url"].as_str().expect("url");
    let expected = format!(
        "http://{}-eventsource-svc.argo-events.svc:{}{}",
        events["metadata"]["name"].as_str().expect("name"),
        hook["port"].as_str().expect("port"),
        hook["endpoint"].as_str().expect("endpoint")
    );
    assert_eq!(url, expected);
    assert_eq!(service["headers"][0]["value"], "application/json");
    assert_eq!(sensor["spec"]["dependencies"][0]["eventName"], "app-synced");
    let annotation = "notifications.argoproj.io/subscribe.on-synced-healthy.argo-events";
    assert!(
        app["metadata"]["annotations"][annotation].is_string(),
        "the Application subscribes"
    );
    assert!(
        cm["data"]["trigger.on-synced-healthy"].is_string(),
        "to a trigger the ConfigMap defines"
    );
    let template: Value = serde_yaml_ng::from_str(
        cm["data"]["template.app-synced"]
            .as_str()
            .expect("template"),
    )
    .expect("YAML");
    let body = template["webhook"]["argo-events"]["body"]
        .as_str()
        .expect("body");
    for field in ["source_phase", "source_commit", "test_target"] {
        assert!(
            body.contains(&format!("\"{field}\"")),
            "{field} in the notification body"
        );
    }
}

#[test]
fn the_multi_source_and_hydrated_notification_reaches_its_own_sensor_and_gate() {
    let events = example("eventsource.yaml");
    let cm = example("argocd-notifications-cm.yaml");
    let sensor = example("sensor-sources.yaml");
    let hook = &events["spec"]["webhook"]["app-synced-sources"];
    let service: Value = serde_yaml_ng::from_str(
        cm["data"]["service.webhook.argo-events-sources"]
            .as_str()
            .expect("service"),
    )
    .expect("YAML");
    let expected = format!(
        "http://{}-eventsource-svc.argo-events.svc:{}{}",
        events["metadata"]["name"].as_str().expect("name"),
        hook["port"].as_str().expect("port"),
        hook["endpoint"].as_str().expect("endpoint")
    );
    assert_eq!(service["url"].as_str(), Some(expected.as_str()));
    assert_eq!(
        hook["authSecret"],
        events["spec"]["webhook"]["app-synced"]["authSecret"]
    );
    let dependency = &sensor["spec"]["dependencies"][0];
    assert_eq!(dependency["eventName"], "app-synced-sources");
    let trigger: Value = serde_yaml_ng::from_str(
        cm["data"]["trigger.on-synced-healthy-sources"]
            .as_str()
            .expect("trigger"),
    )
    .expect("YAML");
    assert_eq!(trigger[0]["send"][0], "app-synced-sources");
    let template: Value = serde_yaml_ng::from_str(
        cm["data"]["template.app-synced-sources"]
            .as_str()
            .expect("template"),
    )
    .expect("YAML");
    let body = template["webhook"]["argo-events-sources"]["body"]
        .as_str()
        .expect("body");
    // The dry commit of a hydrated app, the gitops repository's revision of a multi-source one.
    assert!(
        body.contains("sourceHydrator.lastSuccessfulOperation.drySHA"),
        "{body}"
    );
    assert!(body.contains("syncResult.revisions"), "{body}");
    let custom = &sensor["spec"]["triggers"][0]["template"]["custom"];
    let repo = custom["spec"]["repo"].as_str().expect("repo");
    assert!(
        body.contains(&format!("{repo:?}")),
        "the template picks {repo}'s source"
    );
    for field in ["source_phase", "source_commit", "test_target"] {
        assert!(body.contains(&format!("\"{field}\"")), "{field}");
    }
    // The gate waits on the one Application whose events the Sensor takes.
    let resource = accepted(custom);
    let app = custom["spec"]["argocdApp"].as_str().expect("argocdApp");
    assert_eq!(
        Some(app.rsplit('/').next().unwrap_or(app)),
        dependency["filters"]["data"][0]["value"][0].as_str()
    );
    assert!(resource.argocd.is_some(), "the spec sets the Argo CD gate");
}

#[test]
fn the_webhook_demands_the_token_argo_cd_sends() {
    let events = example("eventsource.yaml");
    let cm = example("argocd-notifications-cm.yaml");
    let text = std::fs::read_to_string(Path::new(ROOT).join("deploy/examples/webhook-auth.yaml"))
        .expect("example");
    let secrets = documents(&text);
    let auth = &events["spec"]["webhook"]["app-synced"]["authSecret"];
    let webhook_secret = secrets
        .iter()
        .find(|d| d["metadata"]["name"] == auth["name"])
        .expect("the EventSource's authSecret is defined");
    assert_eq!(webhook_secret["metadata"]["namespace"], "argo-events");
    let key = auth["key"].as_str().expect("key");
    let token = webhook_secret["stringData"][key].as_str().expect("token");

    let service: Value = serde_yaml_ng::from_str(
        cm["data"]["service.webhook.argo-events"]
            .as_str()
            .expect("service"),
    )
    .expect("YAML");
    let header = service["headers"]
        .as_sequence()
        .expect("headers")
        .iter()
        .find(|h| h["name"] == "Authorization")
        .expect("Argo CD sends an Authorization header");
    let value = header["value"].as_str().expect("value");
    let reference = value
        .strip_prefix("Bearer $")
        .expect("a bearer token read from argocd-notifications-secret");
    let argocd_secret = secrets
        .iter()
        .find(|d| d["metadata"]["name"] == "argocd-notifications-secret")
        .expect("argocd-notifications-secret");
    assert_eq!(argocd_secret["metadata"]["namespace"], "argocd");
    assert_eq!(
        argocd_secret["stringData"][reference].as_str(),
        Some(token),
        "Argo CD sends the token the webhook expects"
    );
}

#[test]
fn only_sensor_pods_reach_the_trigger_port() {
    let policy = example("networkpolicy.yaml");
    let deployment = documents(&render("base"))
        .into_iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("Deployment");
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"],
        deployment["spec"]["template"]["metadata"]["labels"],
        "the policy selects phasegate's pods"
    );
    assert_eq!(
        policy["metadata"]["namespace"],
        deployment["metadata"]["namespace"]
    );
    let rules = policy["spec"]["ingress"].as_sequence().expect("ingress");
    let trigger: Vec<&Value> = rules
        .iter()
        .filter(|r| {
            r["ports"]
                .as_sequence()
                .is_some_and(|ports| ports.iter().any(|p| p["port"] == 9000))
        })
        .collect();
    assert_eq!(trigger.len(), 1, "one rule admits port 9000");
    let from = trigger[0]["from"]
        .as_sequence()
        .expect("port 9000 has sources");
    assert_eq!(from.len(), 1);
    let selector = &from[0]["podSelector"]["matchExpressions"][0];
    assert_eq!(
        selector["key"], "sensor-name",
        "the label Argo Events puts on Sensor pods"
    );
    assert_eq!(selector["operator"], "Exists");
    assert!(
        from[0]["namespaceSelector"].is_null(),
        "only pods of the policy's own namespace"
    );
}

/// The newest file of `dir` whose name starts with `prefix` and that `keep` accepts.
fn newest(dir: &Path, prefix: &str, keep: impl Fn(&Path) -> bool) -> Option<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .expect("a target directory")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .filter(|p| keep(p))
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
}

/// The top-level paths `cargo build --bin phasegate` reads, as the compiler and cargo recorded
/// them: rustc's dep-info of the library the binary is built from (every source file and
/// every `include_str!`/`include_bytes!`, askama's templates among them), what the build
/// script told cargo it reads (`cargo:rerun-if-changed`: `proto/`), the build script itself,
/// the manifest and the lock file. Nothing is listed by hand, so a new directory the build reads
/// is found.
fn paths_the_build_reads() -> std::collections::BTreeSet<String> {
    let root = Path::new(ROOT);
    let profile = Path::new(env!("CARGO_BIN_EXE_phasegate"))
        .parent()
        .expect("the profile directory");
    let library = |text: &str| {
        text.lines()
            .filter_map(|rule| rule.split_once(": "))
            .find(|(output, _)| {
                let name = Path::new(output).file_name().unwrap_or_default();
                let name = name.to_string_lossy();
                name.starts_with("libphasegate-") && name.ends_with(".rlib")
            })
            .map(|(_, inputs)| inputs.to_string())
    };
    let dep_info = newest(&profile.join("deps"), "phasegate-", |p| {
        p.extension().is_some_and(|e| e == "d")
            && std::fs::read_to_string(p).is_ok_and(|t| library(&t).is_some())
    })
    .expect("the library's dep-info in the target directory");
    let dep_info = std::fs::read_to_string(dep_info).expect("dep-info");
    let mut inputs: Vec<String> = library(&dep_info)
        .expect("the library's rule")
        .split_whitespace()
        .map(String::from)
        .collect();
    let build = newest(&profile.join("build"), "phasegate-", |p| {
        p.join("output").is_file()
    })
    .expect("the build script's output");
    let output = std::fs::read_to_string(build.join("output")).expect("output");
    inputs.extend(output.lines().filter_map(|l| {
        let l = l
            .strip_prefix("cargo:")
            .or_else(|| l.strip_prefix("cargo::"))?;
        l.strip_prefix("rerun-if-changed=").map(String::from)
    }));
    let mut paths: std::collections::BTreeSet<String> = ["Cargo.toml", "Cargo.lock", "build.rs"]
        .map(String::from)
        .into();
    for input in &inputs {
        let input = Path::new(input);
        if input.starts_with(profile) {
            continue; // generated by the build script
        }
        let relative = match input.strip_prefix(root) {
            Ok(relative) => relative,
            Err(_) if input.is_relative() => input,
            Err(_) => panic!("the build reads {} outside the repository", input.display()),
        };
        let first = relative.components().next().expect("a path");
        paths.insert(first.as_os_str().to_string_lossy().into_owned());
    }
    paths
}

/// What the Dockerfile's build stage copies from the context: the sources of `COPY` lines
/// without `--from`.
fn copied_by_the_dockerfile() -> std::collections::BTreeSet<String> {
    let dockerfile =
        std::fs::read_to_string(Path::new(ROOT).join("deploy/Dockerfile")).expect("Dockerfile");
    dockerfile
        .lines()
        .filter_map(|l| l.trim().strip_prefix("COPY "))
        .filter(|args| !args.trim_start().starts_with("--"))
        .flat_map(|args| {
            let words: Vec<&str> = args.split_whitespace().collect();
            words[..words.len().saturating_sub(1)]
                .iter()
                .map(|w| w.trim_end_matches('/').to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_dockerfile_copies_every_path_the_build_reads_and_exposes_every_port() {
    let needed = paths_the_build_reads();
    assert!(
        needed.contains("templates") && needed.contains("proto"),
        "{needed:?}"
    );
    let copied = copied_by_the_dockerfile();
    let missing: Vec<_> = needed.difference(&copied).collect();
    assert!(
        missing.is_empty(),
        "deploy/Dockerfile does not copy {missing:?}, which the build reads"
    );
    let dockerfile =
        std::fs::read_to_string(Path::new(ROOT).join("deploy/Dockerfile")).expect("Dockerfile");
    let exposed: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.trim().strip_prefix("EXPOSE "))
        .flat_map(str::split_whitespace)
        .collect();
    let deployment = find(&documents(&render("base")), "Deployment").clone();
    for port in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_sequence()
        .expect("ports")
    {
        let port = port["containerPort"]
            .as_u64()
            .expect("containerPort")
            .to_string();
        assert!(
            exposed.contains(&port.as_str()),
            "EXPOSE lacks {port}: {exposed:?}"
        );
    }
}

#[test]
fn every_kustomization_deploys_the_image_the_build_script_tags() {
    let build = std::fs::read_to_string(Path::new(ROOT).join("deploy/image/build.sh"))
        .expect("deploy/image/build.sh");
    assert!(
        build.contains("tag=${tag:-localhost/phasegate:$version}"),
        "build.sh's default tag changed: change deploy/base/kustomization.yaml's images too"
    );
    let built = format!("localhost/phasegate:{}", env!("CARGO_PKG_VERSION"));
    for dir in ["base", "overlays/argocd-gate", "overlays/tls"] {
        let docs = documents(&render(dir));
        let deployment = find(&docs, "Deployment");
        assert_eq!(
            deployment["spec"]["template"]["spec"]["containers"][0]["image"], built,
            "{dir}"
        );
    }
}
