//! What the API server and the kubelet check of a test Job and its pod, for the fake (`super`):
//! the defaults the API server writes into a created Job (`SetDefaults_Job`,
//! `SetDefaults_PodFailurePolicyOnPodConditionsPattern`, the pod template's core defaults), the
//! 422 validation a spec can trip (`pkg/apis/batch/validation`, resource requests above their
//! limits), Pod Security admission at level "restricted" (`pod-security-admission/policy`),
//! a LimitRange's maximum (the `LimitRanger` admission plugin) and the kubelet's
//! `verifyRunAsNonRoot` against the image's user.
//!
//! Does not model: the other validation rules, quantities that do not parse (a 400 from
//! decoding), the generated `spec.selector`, Pod Security levels other than "restricted" or
//! its checks of volumes, host namespaces, ports, sysctls, AppArmor and SELinux, LimitRange
//! minimums, defaults and ratios, and a ResourceQuota's accounting (only "used up for a
//! while"); image users come from image names, not from an image config.

use serde_json::{Value, json};

/// The image's `USER`, as the image config says, from the image name: `root-image` has none
/// (root), `named-user` a user name, any other a numeric non-root user.
pub(super) fn image_user(image: &str) -> &'static str {
    if image.contains("root-image") {
        "0"
    } else if image.contains("named-user") {
        "tester"
    } else {
        "65532"
    }
}

/// The defaults the API server writes into a created Job and its pod template.
pub(super) fn default_job(job: &mut Value) {
    let spec = &mut job["spec"];
    if spec["completions"].is_null() && spec["parallelism"].is_null() {
        spec["completions"] = json!(1);
    }
    for (field, value) in [
        ("parallelism", json!(1)),
        ("backoffLimit", json!(6)),
        ("completionMode", json!("NonIndexed")),
        ("suspend", json!(false)),
        ("manualSelector", json!(false)),
    ] {
        if spec[field].is_null() {
            spec[field] = value;
        }
    }
    if spec["podReplacementPolicy"].is_null() {
        let policy = if spec["podFailurePolicy"].is_null() {
            "TerminatingOrFailed"
        } else {
            "Failed"
        };
        spec["podReplacementPolicy"] = json!(policy);
    }
    for rule in spec["podFailurePolicy"]["rules"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        for pattern in rule["onPodConditions"].as_array_mut().into_iter().flatten() {
            // An empty status is unset (k8s-openapi writes the required field as "").
            if pattern["status"].is_null() || pattern["status"] == "" {
                pattern["status"] = json!("True");
            }
        }
    }
    let pod = &mut spec["template"]["spec"];
    for (field, value) in [
        ("restartPolicy", json!("Always")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("dnsPolicy", json!("ClusterFirst")),
        ("schedulerName", json!("default-scheduler")),
        ("securityContext", json!({})),
    ] {
        if pod[field].is_null() {
            pod[field] = value;
        }
    }
    for container in pod["containers"].as_array_mut().into_iter().flatten() {
        let image = container["image"].as_str().unwrap_or_default();
        let tag = image.rsplit('/').next().and_then(|n| n.split_once(':'));
        let pull = match tag {
            Some((_, "latest")) | None => "Always",
            Some(_) => "IfNotPresent",
        };
        for (field, value) in [
            ("imagePullPolicy", json!(pull)),
            ("terminationMessagePath", json!("/dev/termination-log")),
            ("terminationMessagePolicy", json!("File")),
        ] {
            if container[field].is_null() {
                container[field] = value;
            }
        }
    }
}

/// The causes (`field`, `message`) for which the API server refuses the Job with a 422.
pub(super) fn invalid_job(job: &Value) -> Vec<(String, String)> {
    let mut causes = Vec::new();
    let pod = &job["spec"]["template"]["spec"];
    let restart = pod["restartPolicy"].as_str().unwrap_or_default();
    if restart != "Never" && restart != "OnFailure" {
        causes.push((
            "spec.template.spec.restartPolicy".to_string(),
            format!("Unsupported value: \"{restart}\": supported values: \"OnFailure\", \"Never\""),
        ));
    }
    let rules = job["spec"]["podFailurePolicy"]["rules"].as_array();
    for (r, rule) in rules.into_iter().flatten().enumerate() {
        let patterns = rule["onPodConditions"].as_array();
        for (p, pattern) in patterns.into_iter().flatten().enumerate() {
            let status = pattern["status"].as_str().unwrap_or_default();
            if !["True", "False", "Unknown"].contains(&status) {
                causes.push((
                    format!("spec.podFailurePolicy.rules[{r}].onPodConditions[{p}].status"),
                    format!("Unsupported value: \"{status}\": supported values: \"True\", \"False\", \"Unknown\""),
                ));
            }
        }
    }
    let containers = pod["containers"].as_array();
    for (i, container) in containers.into_iter().flatten().enumerate() {
        let resources = &container["resources"];
        let requests = resources["requests"].as_object().into_iter().flatten();
        for (resource, request) in requests {
            let limit = &resources["limits"][resource];
            let (Some(request), Some(limit)) = (request.as_str(), limit.as_str()) else {
                continue;
            };
            if quantity(request) > quantity(limit) {
                causes.push((
                    format!("spec.template.spec.containers[{i}].resources.requests"),
                    format!(
                        "Invalid value: \"{request}\": must be less than or equal to {resource} limit of {limit}"
                    ),
                ));
            }
        }
    }
    causes
}

/// The 422 `Status` the API server answers for `causes`.
pub(super) fn invalid_status(name: &str, causes: &[(String, String)]) -> Value {
    let listed: Vec<String> = causes.iter().map(|(f, m)| format!("{f}: {m}")).collect();
    let listed = match listed.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("Job.batch \"{name}\" is invalid: {listed}"), "reason": "Invalid",
        "details": {"name": name, "group": "batch", "kind": "Job",
            "causes": causes.iter().map(|(f, m)| json!({"reason": "FieldValueInvalid", "message": m, "field": f})).collect::<Vec<_>>()},
        "code": 422})
}

/// A quantity as a number (`500m`, `2`, `128Mi`, `1G`), enough to compare two of them.
fn quantity(q: &str) -> f64 {
    let suffixes = [
        ("Ki", 1024f64),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("m", 0.001),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    for (suffix, factor) in suffixes {
        if let Some(number) = q.strip_suffix(suffix) {
            return number.parse::<f64>().unwrap_or(f64::NAN) * factor;
        }
    }
    q.parse().unwrap_or(f64::NAN)
}

/// The pod's violations of Pod Security "restricted" (the checks a test pod can fail), as
/// `violates PodSecurity "restricted:latest": …` lists them; empty when it passes.
pub(super) fn restricted_violations(pod: &Value) -> Vec<String> {
    let mut violations = Vec::new();
    let pod_context = &pod["securityContext"];
    let containers: Vec<&Value> = pod["containers"].as_array().into_iter().flatten().collect();
    let names = |pick: &dyn Fn(&Value) -> bool| -> Vec<String> {
        containers
            .iter()
            .filter(|c| pick(&c["securityContext"]))
            .map(|c| format!("\"{}\"", c["name"].as_str().unwrap_or_default()))
            .collect()
    };
    let which = |names: &[String]| {
        let s = if names.len() == 1 { "" } else { "s" };
        format!("container{s} {}", names.join(", "))
    };
    let escalating = names(&|c| c["allowPrivilegeEscalation"] != false);
    if !escalating.is_empty() {
        violations.push(format!(
            "allowPrivilegeEscalation != false ({} must set securityContext.allowPrivilegeEscalation=false)",
            which(&escalating)
        ));
    }
    let undropped = names(&|c| {
        !c["capabilities"]["drop"]
            .as_array()
            .is_some_and(|d| d.iter().any(|v| v == "ALL"))
    });
    if !undropped.is_empty() {
        violations.push(format!(
            "unrestricted capabilities ({} must set securityContext.capabilities.drop=[\"ALL\"])",
            which(&undropped)
        ));
    }
    let pod_non_root = pod_context["runAsNonRoot"] == true;
    let not_non_root =
        names(&|c| c["runAsNonRoot"] == false || (!pod_non_root && c["runAsNonRoot"] != true));
    if pod_context["runAsNonRoot"] == false {
        violations.push(
            "runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false)".into(),
        );
    } else if !not_non_root.is_empty() {
        violations.push(format!(
            "runAsNonRoot != true (pod or {} must set securityContext.runAsNonRoot=true)",
            which(&not_non_root)
        ));
    }
    let root = names(&|c| c["runAsUser"] == 0);
    if pod_context["runAsUser"] == 0 {
        violations.push("runAsUser=0 (pod must not set runAsUser=0)".into());
    } else if !root.is_empty() {
        violations.push(format!(
            "runAsUser=0 ({} must not set runAsUser=0)",
            which(&root)
        ));
    }
    let allowed = |c: &Value| {
        ["RuntimeDefault", "Localhost"]
            .contains(&c["seccompProfile"]["type"].as_str().unwrap_or_default())
    };
    let unconfined =
        names(&|c| !allowed(c) && (!c["seccompProfile"].is_null() || !allowed(pod_context)));
    if !unconfined.is_empty() {
        violations.push(format!(
            "seccompProfile (pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")",
            which(&unconfined)
        ));
    }
    violations
}

/// The LimitRange's refusal of a container whose limit is above `max` for `resource`, in the
/// `LimitRanger` plugin's words.
pub(super) fn above_limit_range(pod: &Value, resource: &str, max: &str) -> Option<String> {
    pod["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|c| match c["resources"]["limits"][resource].as_str() {
            Some(limit) if quantity(limit) > quantity(max) => Some(format!(
                "maximum {resource} usage per Container is {max}, but limit is {limit}"
            )),
            Some(_) => None,
            None => Some(format!(
                "maximum {resource} usage per Container is {max}.  No limit is specified"
            )),
        })
}

/// The kubelet's `verifyRunAsNonRoot` for the container: its error when the container asks to
/// run as non-root but its user (its `runAsUser`, else the image's) is root or cannot be
/// verified. `pod` is the pod as the kubelet names it (`name_namespace(uid)`).
pub(super) fn verify_run_as_non_root(spec: &Value, container: &Value, pod: &str) -> Option<String> {
    let (pod_context, context) = (&spec["securityContext"], &container["securityContext"]);
    let effective = |field: &str| match &context[field] {
        Value::Null => pod_context[field].clone(),
        value => value.clone(),
    };
    if effective("runAsNonRoot") != true {
        return None;
    }
    let name = container["name"].as_str().unwrap_or_default();
    if let Some(uid) = effective("runAsUser").as_i64() {
        return (uid == 0).then(|| {
            format!(
                "container's runAsUser breaks non-root policy (pod: \"{pod}\", container: {name})"
            )
        });
    }
    match image_user(container["image"].as_str().unwrap_or_default()) {
        "0" => Some(format!(
            "container has runAsNonRoot and image will run as root (pod: \"{pod}\", container: {name})"
        )),
        user if user.parse::<u32>().is_err() => Some(format!(
            "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root (pod: \"{pod}\", container: {name})"
        )),
        _ => None,
    }
}
