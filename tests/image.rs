//! The container image, run as the Deployment runs it. The test command builds the image with
//! `deploy/image/build.sh` and names it in `PHASEGATE_IMAGE`; these tests run it with podman and
//! runc, taking every setting from `deploy/base` itself (`kubectl kustomize`): the Deployment's
//! args, env, ports, user, group, fsGroup, read-only root filesystem, dropped capabilities, no
//! privilege escalation, memory limit and volumes, and the ConfigMap's config, mounted
//! read-only. A change to the manifests that the image cannot follow fails here.
//!
//! Does not model: the kubelet itself (its gRPC and HTTP probes are made here as it makes
//! them), the seccomp profile (podman's default stands in for `RuntimeDefault`), the cluster
//! network (the container reaches this machine's git and test servers through podman's
//! gateway, `host.containers.internal`), and Secrets (their values are given as the env).

use std::{
    collections::BTreeMap,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
    process::{Command, Output},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use crate::deploy::{documents, find, render};
use crate::support::{git_server::GitServer, *};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Value as Json, json};
use serde_yaml_ng::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The image under test; a machine without one fails loudly instead of skipping.
pub(crate) fn image() -> String {
    std::env::var("PHASEGATE_IMAGE").unwrap_or_else(|_| {
        panic!(
            "PHASEGATE_IMAGE is not set: build the image with deploy/image/build.sh and export \
             PHASEGATE_IMAGE=<the tag it prints> (the README's test command does both)"
        )
    })
}

/// podman with runc (this kernel's hybrid cgroups are refused by crun).
pub(crate) fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .arg("--runtime=runc")
        .args(args)
        .output()
        .expect("podman must be installed: run the README's test command, which installs it")
}

/// [`podman`], which must succeed; its standard output.
pub(crate) fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The flags every container gets: podman's default rlimits are above what this machine's
/// runc may set.
const ULIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

/// A container, removed when dropped.
pub(crate) struct Container {
    pub(crate) name: String,
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--time", "0", &self.name]);
    }
}

impl Container {
    /// The address on this machine where the container's `port` is published.
    pub(crate) fn published(&self, port: u64) -> String {
        let out = podman(&["port", &self.name, &format!("{port}/tcp")]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout
            .lines()
            .next()
            .map(str::to_string)
            .unwrap_or_else(|| {
                panic!(
                    "port {port} is not published ({}); running: {}; logs:\n{}",
                    String::from_utf8_lossy(&out.stderr).trim(),
                    self.running(),
                    self.logs()
                )
            })
    }

    fn logs(&self) -> String {
        let out = podman(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn running(&self) -> bool {
        podman_ok(&["inspect", "--format", "{{.State.Running}}", &self.name]) == "true"
    }
}

/// `deploy/base` rendered: its Deployment and the ConfigMap's `config.yaml`.
pub(crate) fn the_base() -> (Value, String) {
    let docs = documents(&render("base"));
    let deployment = find(&docs, "Deployment").clone();
    let config = find(&docs, "ConfigMap")["data"]["config.yaml"]
        .as_str()
        .expect("config.yaml")
        .to_string();
    (deployment, config)
}

/// A directory as the kubelet makes an `emptyDir` for a pod with `fsGroup`: root-owned,
/// world-writable, its group the fsGroup, setgid.
fn empty_dir(path: &Path, fs_group: Option<u32>) {
    std::fs::create_dir_all(path).expect("emptyDir");
    std::os::unix::fs::chown(path, Some(0), fs_group).expect("chown emptyDir");
    let mode = if fs_group.is_some() { 0o2777 } else { 0o777 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// `512Mi` as podman's `512m`.
fn memory(quantity: &str) -> String {
    for (suffix, unit) in [("Mi", "m"), ("Gi", "g")] {
        if let Some(n) = quantity.strip_suffix(suffix) {
            return format!("{n}{unit}");
        }
    }
    panic!("a memory limit this test does not convert: {quantity}")
}

/// Starts `image` as `deployment`'s first container runs: `config` is the ConfigMap volume's
/// `config.yaml`, `secrets` the values of its `secretKeyRef`s (`secret/key` → value), volumes
/// under `dir`. Every port is published on 127.0.0.1.
pub(crate) fn run_as_deployed(
    image: &str,
    deployment: &Value,
    config: &str,
    secrets: &BTreeMap<&str, &str>,
    dir: &Path,
) -> Container {
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let pod_security = &pod["securityContext"];
    let security = &container["securityContext"];
    let uid = |v: &Value| v.as_u64().map(|n| u32::try_from(n).expect("a uid"));
    let fs_group = uid(&pod_security["fsGroup"]);
    static STARTED: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "phasegate-test-{}-{}",
        std::process::id(),
        STARTED.fetch_add(1, Ordering::SeqCst)
    );
    let mut args: Vec<String> = ["run", "--detach", "--name", &name]
        .iter()
        .chain(&ULIMITS)
        .map(|s| s.to_string())
        .collect();
    let user = uid(&pod_security["runAsUser"]).expect("runAsUser");
    let group = uid(&pod_security["runAsGroup"]).expect("runAsGroup");
    args.push(format!("--user={user}:{group}"));
    if let Some(fs_group) = fs_group {
        args.push(format!("--group-add={fs_group}"));
    }
    if security["readOnlyRootFilesystem"] == true {
        // Only the volumes are writable: not podman's own tmpfs on /tmp, /var/tmp and /run.
        args.extend(["--read-only", "--read-only-tmpfs=false"].map(String::from));
    }
    for cap in security["capabilities"]["drop"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        args.push(format!(
            "--cap-drop={}",
            cap.as_str().expect("a capability")
        ));
    }
    if security["allowPrivilegeEscalation"] == false {
        args.push("--security-opt=no-new-privileges".into());
    }
    if let Some(limit) = container["resources"]["limits"]["memory"].as_str() {
        args.push(format!("--memory={}", memory(limit)));
    }
    for env in container["env"].as_sequence().into_iter().flatten() {
        let name = env["name"].as_str().expect("env name");
        let reference = &env["valueFrom"]["secretKeyRef"];
        let value = if let Some(value) = env["value"].as_str() {
            Some(value)
        } else if let (Some(secret), Some(key)) =
            (reference["name"].as_str(), reference["key"].as_str())
        {
            let value = secrets.get(format!("{secret}/{key}").as_str()).copied();
            assert!(
                value.is_some() || reference["optional"] == true,
                "{name} needs {secret}/{key}"
            );
            value
        } else {
            panic!("an env entry this test does not model: {env:?}")
        };
        if let Some(value) = value {
            args.push(format!("--env={name}={value}"));
        }
    }
    for port in container["ports"].as_sequence().expect("ports") {
        let port = port["containerPort"].as_u64().expect("containerPort");
        args.push(format!("--publish=127.0.0.1::{port}"));
    }
    for mount in container["volumeMounts"]
        .as_sequence()
        .expect("volumeMounts")
    {
        let volume_name = mount["name"].as_str().expect("volume name");
        let volume = pod["volumes"]
            .as_sequence()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == volume_name)
            .unwrap_or_else(|| panic!("no volume {volume_name}"));
        let host = dir.join(volume_name);
        if volume["configMap"].is_mapping() {
            std::fs::create_dir_all(&host).expect("configMap volume");
            std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            std::fs::write(host.join("config.yaml"), config).expect("config.yaml");
        } else if volume["emptyDir"].is_mapping() {
            empty_dir(&host, fs_group);
        } else {
            panic!("a volume this test does not model: {volume:?}");
        }
        let read_only = if mount["readOnly"] == true { ":ro" } else { "" };
        let path = mount["mountPath"].as_str().expect("mountPath");
        args.push(format!("--volume={}:{path}{read_only}", host.display()));
    }
    args.push(image.to_string());
    for arg in container["args"].as_sequence().expect("args") {
        args.push(arg.as_str().expect("an arg").to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    podman_ok(&args);
    Container { name }
}

/// grpcurl (the real binary the test command installs), plaintext, with a JSON body.
fn grpcurl(addr: &str, method: &str, body: &Json) -> Result<Json, String> {
    let out = Command::new("grpcurl")
        .args(["-plaintext", "-d", &body.to_string(), addr, method])
        .output()
        .expect("grpcurl must be on PATH: run the README's test command, which installs it");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).expect("grpcurl prints JSON"))
}

/// Waits as the kubelet's readiness probe does (gRPC health of the probe's service) until the
/// container is serving; the time it took.
pub(crate) fn ready(container: &Container, deployment: &Value) -> (String, Duration) {
    let probe = &deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"];
    let grpc = container.published(probe["port"].as_u64().expect("probe port"));
    let service = json!({"service": probe["service"].as_str().unwrap_or_default()});
    let since = Instant::now();
    loop {
        match grpcurl(&grpc, "grpc.health.v1.Health/Check", &service) {
            Ok(answer) if answer["status"] == "SERVING" => return (grpc, since.elapsed()),
            _ if since.elapsed() > Duration::from_secs(60) || !container.running() => panic!(
                "not serving after 60 s; running: {}; logs:\n{}",
                container.running(),
                container.logs()
            ),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Argo Events' custom trigger, as the Sensor calls it: FetchResource with `spec`, the event's
/// parameters applied to the resource it answered, Execute, ApplyPolicy. ApplyPolicy's answer
/// or error, and Execute's JSON.
pub(crate) fn fire(
    grpc: &str,
    spec: &str,
    params: &[(&str, &str)],
) -> (Result<Json, String>, Json) {
    let bytes = |field: &Json| {
        STANDARD
            .decode(field.as_str().expect("bytes"))
            .expect("base64")
    };
    let fetched = grpcurl(
        grpc,
        "triggers.Trigger/FetchResource",
        &json!({"resource": STANDARD.encode(spec)}),
    )
    .expect("FetchResource");
    let mut resource: Json = serde_json::from_slice(&bytes(&fetched["resource"])).expect("JSON");
    for (dest, value) in params {
        let (object, field) = dest.split_once('.').expect("object.field");
        resource[object][field] = json!(value);
    }
    let executed = grpcurl(
        grpc,
        "triggers.Trigger/Execute",
        &json!({"resource": STANDARD.encode(resource.to_string()),
                "payload": STANDARD.encode(FROM_TEST)}),
    )
    .expect("Execute");
    let answer = bytes(&executed["response"]);
    let policy = grpcurl(
        grpc,
        "triggers.Trigger/ApplyPolicy",
        &json!({"request": STANDARD.encode(&answer)}),
    );
    (
        policy,
        serde_json::from_slice(&answer).expect("Execute's JSON"),
    )
}

/// A test target on this machine that containers reach, as they name it: `/` answers `status`.
pub(crate) async fn test_target(status: u16) -> String {
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let status = axum::http::StatusCode::from_u16(status).expect("a status");
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || async move { (status, "petstore is up") }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://host.containers.internal:{port}")
}

/// The ConfigMap's config, with what this machine's servers need added (and nothing changed):
/// the host's git repositories in `policy.repos`, `git.allowInsecureHttp` (the test git server
/// speaks plain http), and `profile` in `testProfiles`.
pub(crate) fn with_host(config: &str, git_port: u16, profile: (&str, Value)) -> String {
    let mut config: Value = serde_yaml_ng::from_str(config).expect("the ConfigMap's config");
    config["policy"]["repos"]
        .as_sequence_mut()
        .expect("policy.repos")
        .push(format!("http://host.containers.internal:{git_port}/*").into());
    config["git"]
        .as_mapping_mut()
        .expect("git")
        .insert("allowInsecureHttp".into(), true.into());
    config["testProfiles"]
        .as_mapping_mut()
        .expect("testProfiles")
        .insert(profile.0.into(), profile.1);
    serde_yaml_ng::to_string(&config).expect("YAML")
}

fn seconds(value: &Value) -> Duration {
    let text = value.as_str().expect("a duration");
    let seconds = text
        .strip_suffix('s')
        .expect("seconds")
        .parse()
        .expect("a number");
    Duration::from_secs(seconds)
}

#[test]
fn the_image_is_minimal_labelled_and_agrees_with_the_dockerfile() {
    let image = image();
    let (deployment, _) = the_base();
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"], image,
        "deploy/base does not deploy the image under test"
    );
    let inspect: Json =
        serde_json::from_str(&podman_ok(&["image", "inspect", &image])).expect("JSON");
    let config = &inspect[0]["Config"];
    let labels = &config["Labels"];
    let cargo = std::fs::read_to_string(Path::new(ROOT).join("Cargo.toml")).expect("Cargo.toml");
    let version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("version");
    assert_eq!(labels["org.opencontainers.image.version"], version);
    let head = String::from_utf8(succeed(
        Command::new("git").args(["-C", ROOT, "rev-parse", "HEAD"]),
        "git",
    ))
    .expect("utf8");
    let revision = labels["org.opencontainers.image.revision"]
        .as_str()
        .expect("revision");
    assert!(
        revision.starts_with(head.trim()),
        "the image was built from {revision}, this tree is {head}: rebuild it (deploy/image/build.sh)"
    );
    assert!(
        labels["org.opencontainers.image.source"].is_string(),
        "{labels}"
    );

    // The Dockerfile's runtime stage says what deploy/image/build.sh configured.
    let dockerfile =
        std::fs::read_to_string(Path::new(ROOT).join("deploy/Dockerfile")).expect("Dockerfile");
    let runtime = dockerfile
        .split("FROM scratch")
        .nth(1)
        .expect("a FROM scratch stage")
        .replace("\\\n", " ");
    let instruction = |name: &str| {
        runtime
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in the runtime stage"))
            .trim()
    };
    let json_list = |text: &str| serde_json::from_str::<Json>(text).expect("a JSON list");
    assert_eq!(config["Entrypoint"], json_list(instruction("ENTRYPOINT")));
    assert_eq!(config["Cmd"], json_list(instruction("CMD")));
    assert_eq!(config["User"], instruction("USER"));
    let pod = &deployment["spec"]["template"]["spec"]["securityContext"];
    assert_eq!(
        config["User"],
        format!(
            "{}:{}",
            pod["runAsUser"].as_u64().expect("runAsUser"),
            pod["runAsGroup"].as_u64().expect("runAsGroup")
        ),
        "the image's user is not the Deployment's"
    );
    assert_eq!(config["WorkingDir"], instruction("WORKDIR"));
    let env: Vec<&str> = config["Env"]
        .as_array()
        .expect("Env")
        .iter()
        .filter_map(Json::as_str)
        .collect();
    for pair in instruction("ENV").split_whitespace() {
        assert!(env.contains(&pair), "the image lacks ENV {pair}: {env:?}");
    }
    let mut exposed: Vec<String> = instruction("EXPOSE")
        .split_whitespace()
        .map(|p| format!("{p}/tcp"))
        .collect();
    let mut ports: Vec<String> = config["ExposedPorts"]
        .as_object()
        .expect("ExposedPorts")
        .keys()
        .cloned()
        .collect();
    exposed.sort();
    ports.sort();
    assert_eq!(ports, exposed);
    assert!(
        runtime.contains("COPY --from=build /rootfs/ /")
            && dockerfile.contains("deploy/image/rootfs.sh target/release/phasegate /rootfs"),
        "the Dockerfile's runtime is deploy/image/rootfs.sh's tree"
    );

    // No shell, no package manager: only what rootfs.sh puts there.
    let (_dir, root) = tempdir();
    let mount = podman_ok(&["image", "mount", &image]);
    let copy = root.join("rootfs");
    succeed(
        Command::new("cp").args(["-a", &format!("{mount}/."), &copy.display().to_string()]),
        "cp",
    );
    let _ = podman(&["image", "unmount", &image]);
    for absent in [
        "bin/sh",
        "usr/bin/sh",
        "bin/busybox",
        "usr/bin/apt",
        "usr/bin/dpkg",
    ] {
        assert!(!copy.join(absent).exists(), "the image has /{absent}");
    }
    let passwd = std::fs::read_to_string(copy.join("etc/passwd")).expect("/etc/passwd");
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("nonroot:x:65532:65532:")),
        "{passwd}"
    );
    let cache = std::fs::metadata(copy.join("var/cache/phasegate")).expect("the cache dir");
    assert_eq!(
        (cache.uid(), cache.gid(), cache.mode() & 0o777),
        (65532, 65532, 0o700)
    );
    assert!(
        copy.join("etc/ssl/certs/ca-certificates.crt")
            .metadata()
            .expect("CA bundle")
            .len()
            > 10_000
    );
    let out = podman(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/sh",
        &image,
        "-c",
        "true",
    ]);
    assert!(!out.status.success(), "a shell ran in the image");
}

#[test]
fn the_demo_runs_in_the_image_as_the_deployments_user_on_a_read_only_root() {
    let (deployment, _) = the_base();
    let pod = &deployment["spec"]["template"]["spec"]["securityContext"];
    let user = format!(
        "--user={}:{}",
        pod["runAsUser"].as_u64().expect("uid"),
        pod["runAsGroup"].as_u64().expect("gid")
    );
    let mut args = vec![
        "run",
        "--rm",
        "--read-only",
        "--read-only-tmpfs=false",
        "--tmpfs=/tmp",
        "--cap-drop=ALL",
        &user,
    ];
    args.extend(ULIMITS);
    let image = image();
    args.extend([image.as_str(), "demo"]);
    let out = podman_ok(&args);
    assert!(out.contains("promoted"), "{out}");
    assert!(out.contains("+  version: \"2.0\""), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_image_serves_as_the_deployment_runs_it_promotes_and_stops_on_sigterm() {
    let (deployment, config) = the_base();
    let (_dir, root) = tempdir();
    let bare = root.join("repos/gitops.git");
    std::fs::create_dir_all(root.join("repos")).expect("repos");
    let synced = gitops_repo(&bare, &["petstore"]);
    let git = GitServer::start_for_containers(&root.join("repos"), "phasegate-bot", "s3cret").await;
    let target = test_target(200).await;
    let profile: Value = serde_yaml_ng::from_str(&format!(
        "{{test: http, testAttempts: 1, testTargets: [\"{target}\"]}}"
    ))
    .expect("profile");
    let config = with_host(&config, git.port(), ("smoke", profile));
    let secrets = BTreeMap::from([
        ("github-credentials/username", "phasegate-bot"),
        ("github-credentials/password", "s3cret"),
    ]);
    let container = tokio::task::block_in_place(|| {
        run_as_deployed(
            &image(),
            &deployment,
            &config,
            &secrets,
            &root.join("volumes"),
        )
    });
    let (grpc, started) = tokio::task::block_in_place(|| ready(&container, &deployment));
    println!(
        "serving gRPC health {} ms after podman run returned",
        started.as_millis()
    );

    let ports = &deployment["spec"]["template"]["spec"]["containers"][0]["ports"];
    let port_named = |name: &str| {
        let port = ports
            .as_sequence()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == name);
        container.published(
            port.expect("a named port")["containerPort"]
                .as_u64()
                .expect("port"),
        )
    };
    let http = reqwest::Client::new();
    let metrics = port_named("metrics");
    let readyz = http
        .get(format!("http://{metrics}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(readyz.status(), 200);
    let console = port_named("console");
    let board = http
        .get(format!("http://{console}/"))
        .send()
        .await
        .expect("console");
    assert_eq!(board.status(), 200);

    let spec = format!(
        "repo: {}\npath: {}\nphases: test,prod\ntestProfile: smoke\n",
        git.url_as("host.containers.internal", "gitops"),
        PATH.replace("{app}", "petstore")
    );
    let (policy, answer) = tokio::task::block_in_place(|| {
        fire(
            &grpc,
            &spec,
            &[("source.commit", &synced), ("test.target", &target)],
        )
    });
    let policy = policy.unwrap_or_else(|e| panic!("{e}\n{answer}\n{}", container.logs()));
    assert_eq!(policy["success"], true, "{policy}");
    assert_eq!(answer["outcome"], "promoted", "{answer}");
    assert_eq!(version_of(&bare, "petstore", "prod"), "2.0");
    let scrape = http
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .expect("metrics");
    let scrape = scrape.text().await.expect("text");
    assert!(scrape.contains("outcome=\"promoted\""), "{scrape}");

    // SIGTERM, as the kubelet stops the pod: out within shutdownGrace, cleanly.
    let config: Value = serde_yaml_ng::from_str(&config).expect("config");
    let grace = seconds(&config["shutdownGrace"]);
    let since = Instant::now();
    tokio::task::block_in_place(|| podman_ok(&["kill", "--signal", "TERM", &container.name]));
    while container.running() {
        assert!(
            since.elapsed() < grace,
            "still running {grace:?} after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let code = podman_ok(&[
        "inspect",
        "--format",
        "{{.State.ExitCode}}",
        &container.name,
    ]);
    let logs = container.logs();
    assert_eq!(code, "0", "{logs}");
    // PHASEGATE_LOG_FORMAT=json from the Deployment: every line is a JSON object.
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let line: Json = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(line["level"].is_string(), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_derived_image_runs_the_robot_campaign_with_the_command_runner() {
    let image = std::env::var("PHASEGATE_ROBOT_IMAGE").unwrap_or_else(|_| {
        panic!(
            "PHASEGATE_ROBOT_IMAGE is not set: build it with examples/robot-image/build.sh and \
             export PHASEGATE_ROBOT_IMAGE=<the tag it prints> (the README's test command does both)"
        )
    });
    let (deployment, config) = the_base();
    let (_dir, root) = tempdir();
    let bare = root.join("repos/gitops.git");
    std::fs::create_dir_all(root.join("repos")).expect("repos");
    let synced = gitops_repo(&bare, &["petstore"]);
    let git = GitServer::start_for_containers(&root.join("repos"), "phasegate-bot", "s3cret").await;
    let (up, down) = (test_target(200).await, test_target(503).await);
    // The README's profile for the derived image.
    let profile: Value = serde_yaml_ng::from_str(&format!(
        "{{test: command, testCommand: /usr/local/bin/robot, \
          testArgs: '[\"--variable\", \"TARGET:{{target}}\", \"--outputdir\", \"/tmp/robot\", \"/campaign/suites\"]', \
          testTargets: [\"{up}\", \"{down}\"]}}"
    ))
    .expect("profile");
    let config = with_host(&config, git.port(), ("petstore-robot", profile));
    let secrets = BTreeMap::from([
        ("github-credentials/username", "phasegate-bot"),
        ("github-credentials/password", "s3cret"),
    ]);
    let container = tokio::task::block_in_place(|| {
        run_as_deployed(
            &image,
            &deployment,
            &config,
            &secrets,
            &root.join("volumes"),
        )
    });
    let (grpc, _) = tokio::task::block_in_place(|| ready(&container, &deployment));
    let spec = format!(
        "repo: {}\npath: {}\nphases: test,prod\ntestProfile: petstore-robot\n",
        git.url_as("host.containers.internal", "gitops"),
        PATH.replace("{app}", "petstore")
    );

    let (policy, answer) = tokio::task::block_in_place(|| {
        fire(
            &grpc,
            &spec,
            &[("source.commit", &synced), ("test.target", &up)],
        )
    });
    let log = answer["test"]["log"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(policy.is_ok(), "{policy:?}\n{answer}\n{}", container.logs());
    assert_eq!(answer["outcome"], "promoted", "{answer}");
    assert!(
        log.contains("The Petstore Answers") && log.contains("PASS"),
        "{log}"
    );
    assert_eq!(version_of(&bare, "petstore", "prod"), "2.0");

    let newer = bump(&bare, &["petstore"], "test", "3.0");
    let (policy, answer) = tokio::task::block_in_place(|| {
        fire(
            &grpc,
            &spec,
            &[("source.commit", &newer), ("test.target", &down)],
        )
    });
    let log = answer["test"]["log"].as_str().unwrap_or_default();
    assert!(
        policy.is_err_and(|e| e.contains("FailedPrecondition")),
        "{answer}"
    );
    assert_eq!(answer["outcome"], "tests-failed", "{answer}");
    assert!(log.contains("FAIL") && log.contains("503"), "{log}");
    assert_eq!(
        version_of(&bare, "petstore", "prod"),
        "2.0",
        "nothing pushed"
    );
}

/// Runs one of `deploy/image`'s scripts; its exit status and standard error.
fn script(name: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(Path::new(ROOT).join("deploy/image").join(name))
        .args(args)
        .output()
        .expect("run the script");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_image_scripts_refuse_what_they_cannot_build_and_say_why() {
    let (_dir, root) = tempdir();
    let binary = env!("CARGO_BIN_EXE_phasegate");
    let dest = root.join("rootfs");
    let dest = dest.to_str().expect("utf8");

    let (ok, err) = script("rootfs.sh", &["/nonexistent/phasegate", dest]);
    assert!(
        !ok && err.contains("/nonexistent/phasegate is not an executable"),
        "{err}"
    );
    std::fs::create_dir_all(root.join("rootfs/leftover")).expect("leftover");
    let (ok, err) = script("rootfs.sh", &[binary, dest]);
    assert!(!ok && err.contains("is not empty"), "{err}");
    assert!(
        !root.join("rootfs/usr").exists(),
        "nothing written into a tree that was not empty"
    );
    let (ok, err) = script("build.sh", &["--push"]);
    assert!(!ok && err.contains("unknown argument --push"), "{err}");

    // A program linking a library this machine does not have stops the build, naming it.
    let c = root.join("main.c");
    std::fs::write(&c, "int gone(void);\nint main(void) { return gone(); }\n").expect("main.c");
    std::fs::write(root.join("gone.c"), "int gone(void) { return 0; }\n").expect("gone.c");
    let lib = root.join("libgone.so");
    succeed(
        Command::new("cc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(&lib)
            .arg(root.join("gone.c")),
        "a C compiler (gcc)",
    );
    let program = root.join("needs-gone");
    succeed(
        Command::new("cc").arg("-o").arg(&program).arg(&c).arg(&lib),
        "a C compiler (gcc)",
    );
    std::fs::remove_file(&lib).expect("remove the library");
    let libraries = root.join("libraries");
    let (ok, err) = script(
        "libraries.sh",
        &[
            libraries.to_str().expect("utf8"),
            program.to_str().expect("utf8"),
        ],
    );
    assert!(!ok && err.contains("libgone.so => not found"), "{err}");
}
