//! The test pod's security contexts: the Pod Security "restricted" defaults, a spec's
//! `testPodSecurityContext` / `testSecurityContext` merged over them, and the check that the
//! result is no wider than the level the operator allows (Pod Security Standards,
//! <https://kubernetes.io/docs/concepts/security/pod-security-standards/>).
//!
//! A spec is the event sender's, so it may ask for at most "restricted" (or "baseline" when the
//! operator's `policy.testPodSecurity` says so); "privileged" never comes from a spec. The Job
//! runner builds its manifest from [`pod_context`] and [`container_context`], so the Job posted
//! is exactly what [`check`] validated. Only the fields a securityContext has in Kubernetes
//! 1.33 are accepted: an unknown one is refused rather than dropped on the way to the cluster.

use std::fmt;

use serde_json::{Value, json};

use schema::{
    CAPABILITY_FIELDS, CONTAINER_FIELDS, Context, POD_FIELDS, PROFILE_FIELDS, SE_LINUX_FIELDS,
    SYSCTL_FIELDS, WINDOWS_FIELDS, quote_str,
};

mod schema;

/// How wide a spec's test pod security contexts may be: a Pod Security Standards level.
///
/// There is deliberately no "privileged": a privileged test pod is the operator's to define
/// (a test profile in the server configuration), never an event sender's.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum PodSecurityLevel {
    /// Pod Security "restricted": non-root, no privilege escalation, all capabilities dropped,
    /// a seccomp profile. The default, and what phasegate's own defaults pass.
    #[default]
    Restricted,
    /// Pod Security "baseline": no known privilege escalation, but root and added baseline
    /// capabilities allowed (for test images that cannot run as non-root).
    Baseline,
}

impl PodSecurityLevel {
    fn as_str(self) -> &'static str {
        match self {
            PodSecurityLevel::Restricted => "restricted",
            PodSecurityLevel::Baseline => "baseline",
        }
    }

    /// A rule of this level broken at `path`, said in one line.
    fn refuse(self, path: impl fmt::Display, problem: impl fmt::Display) -> String {
        format!(
            "{path} {problem} (Pod Security \"{self}\"; the operator's policy.testPodSecurity \
             allows at most \"{self}\")"
        )
    }
}

impl fmt::Display for PodSecurityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const POD_KEY: &str = "testPodSecurityContext";
const CONTAINER_KEY: &str = "testSecurityContext";

/// Capabilities "baseline" lets a container add (the container runtimes' default set).
const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];
/// The one capability "restricted" lets a container add.
const RESTRICTED_CAPABILITIES: &[&str] = &["NET_BIND_SERVICE"];
/// SELinux types "baseline" allows (the empty string is the runtime's default).
const SE_LINUX_TYPES: &[&str] = &[
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];
/// The namespaced sysctls "baseline" calls safe: they cannot affect the node or other pods.
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

/// The test pod's effective securityContext: `runAsNonRoot: true` and a `RuntimeDefault`
/// seccomp profile, with the spec's `testPodSecurityContext` merged over them key by key (so
/// `{"runAsUser": 1000}` keeps both). A spec value that is not an object is returned as is, for
/// [`check`] to refuse.
pub fn pod_context(spec: Option<&Value>) -> Value {
    merged(
        json!({"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}}),
        spec,
    )
}

/// The test container's effective securityContext: no privilege escalation and all
/// capabilities dropped, with the spec's `testSecurityContext` merged over them key by key.
pub fn container_context(spec: Option<&Value>) -> Value {
    merged(
        json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}),
        spec,
    )
}

fn merged(mut defaults: Value, spec: Option<&Value>) -> Value {
    match (spec, &mut defaults) {
        (None | Some(Value::Null), _) => defaults,
        (Some(Value::Object(given)), Value::Object(effective)) => {
            for (key, value) in given {
                effective.insert(key.clone(), value.clone());
            }
            defaults
        }
        (Some(other), _) => other.clone(),
    }
}

/// Whether the effective contexts ([`pod_context`], [`container_context`]) are no wider than
/// `level` allows. `Err` is one line naming the spec key, the field's path and the level; a
/// context that is not a securityContext of Kubernetes 1.33 (a field it has not, a value of
/// the wrong type) is refused too.
pub fn check(level: PodSecurityLevel, pod: &Value, container: &Value) -> Result<(), String> {
    let pod = Context::new(
        POD_KEY.to_string(),
        pod,
        POD_FIELDS,
        "a pod securityContext",
    )?;
    let container = Context::new(
        CONTAINER_KEY.to_string(),
        container,
        CONTAINER_FIELDS,
        "a container securityContext",
    )?;
    shared(level, &pod)?;
    pod_only(level, &pod)?;
    shared(level, &container)?;
    container_only(level, &container)?;
    if level == PodSecurityLevel::Restricted {
        across_levels(level, &pod, &container)?;
    }
    Ok(())
}

/// What both levels' contexts have: user, SELinux, seccomp, AppArmor, Windows options.
fn shared(level: PodSecurityLevel, ctx: &Context<'_>) -> Result<(), String> {
    ctx.bool("runAsNonRoot")?;
    ctx.int("runAsGroup")?;
    if ctx.int("runAsUser")? == Some(0) && level == PodSecurityLevel::Restricted {
        return Err(level.refuse(ctx.path("runAsUser"), "must not be 0 (root)"));
    }
    if let Some(se) = ctx.object("seLinuxOptions", SE_LINUX_FIELDS, "seLinuxOptions")? {
        se.str("level")?;
        for field in ["user", "role"] {
            if se.str(field)?.is_some_and(|s| !s.is_empty()) {
                return Err(level.refuse(se.path(field), "must not be set"));
            }
        }
        if let Some(t) = se.str("type")?
            && !SE_LINUX_TYPES.contains(&t)
        {
            return Err(level.refuse(
                se.path("type"),
                format_args!(
                    "must be container_t, container_init_t, container_kvm_t or \
                     container_engine_t, got {}",
                    quote_str(t)
                ),
            ));
        }
    }
    for field in ["seccompProfile", "appArmorProfile"] {
        if let Some(profile) = ctx.object(field, PROFILE_FIELDS, field)? {
            profile.str("localhostProfile")?;
            match profile.str("type")? {
                Some("RuntimeDefault" | "Localhost") => {}
                Some(other) => {
                    return Err(level.refuse(
                        profile.path("type"),
                        format_args!(
                            "must be RuntimeDefault or Localhost, got {}",
                            quote_str(other)
                        ),
                    ));
                }
                None => return Err(format!("{} is required", profile.path("type"))),
            }
        }
    }
    if let Some(windows) = ctx.object("windowsOptions", WINDOWS_FIELDS, "windowsOptions")? {
        for field in [
            "gmsaCredentialSpec",
            "gmsaCredentialSpecName",
            "runAsUserName",
        ] {
            windows.str(field)?;
        }
        if windows.bool("hostProcess")? == Some(true) {
            return Err(level.refuse(windows.path("hostProcess"), "must not be true"));
        }
    }
    Ok(())
}

/// The pod's own fields: only sysctls are limited ("baseline": the safe set).
fn pod_only(level: PodSecurityLevel, pod: &Context<'_>) -> Result<(), String> {
    pod.int("fsGroup")?;
    pod.str("fsGroupChangePolicy")?;
    pod.str("seLinuxChangePolicy")?;
    pod.ints("supplementalGroups")?;
    pod.str("supplementalGroupsPolicy")?;
    for sysctl in pod.objects("sysctls", SYSCTL_FIELDS, "a sysctl")? {
        sysctl.str("value")?;
        let Some(name) = sysctl.str("name")? else {
            return Err(format!("{} is required", sysctl.path("name")));
        };
        if !SAFE_SYSCTLS.contains(&name) {
            return Err(level.refuse(
                sysctl.path("name"),
                format_args!("must be a safe sysctl, got {}", quote_str(name)),
            ));
        }
    }
    Ok(())
}

/// The container's own fields: privileged, /proc, capabilities, privilege escalation.
fn container_only(level: PodSecurityLevel, c: &Context<'_>) -> Result<(), String> {
    c.bool("readOnlyRootFilesystem")?;
    if c.bool("privileged")? == Some(true) {
        return Err(level.refuse(c.path("privileged"), "must not be true"));
    }
    if let Some(mount) = c.str("procMount")?
        && mount != "Default"
    {
        return Err(level.refuse(
            c.path("procMount"),
            format_args!("must be Default, got {}", quote_str(mount)),
        ));
    }
    let capabilities = c.object("capabilities", CAPABILITY_FIELDS, "capabilities")?;
    let (add, drop) = match &capabilities {
        Some(caps) => (caps.strings("add")?, caps.strings("drop")?),
        None => (Vec::new(), Vec::new()),
    };
    let restricted = level == PodSecurityLevel::Restricted;
    let allowed = if restricted {
        RESTRICTED_CAPABILITIES
    } else {
        BASELINE_CAPABILITIES
    };
    if let Some(cap) = add.iter().find(|cap| !allowed.contains(cap)) {
        return Err(level.refuse(
            c.path("capabilities.add"),
            format_args!(
                "may hold only {}, got {}",
                allowed.join(", "),
                quote_str(cap)
            ),
        ));
    }
    let escalation = c.bool("allowPrivilegeEscalation")?;
    if restricted && escalation != Some(false) {
        return Err(level.refuse(c.path("allowPrivilegeEscalation"), "must be false"));
    }
    if restricted && !drop.contains(&"ALL") {
        return Err(level.refuse(c.path("capabilities.drop"), "must include \"ALL\""));
    }
    Ok(())
}

/// "restricted"'s rules a container may meet through its pod's context: non-root and seccomp.
fn across_levels(
    level: PodSecurityLevel,
    pod: &Context<'_>,
    container: &Context<'_>,
) -> Result<(), String> {
    let pod_non_root = pod.bool("runAsNonRoot")?;
    if pod_non_root == Some(false) {
        return Err(level.refuse(pod.path("runAsNonRoot"), "must not be false"));
    }
    match container.bool("runAsNonRoot")?.or(pod_non_root) {
        Some(true) => {}
        Some(false) => {
            return Err(level.refuse(container.path("runAsNonRoot"), "must not be false"));
        }
        None => {
            return Err(level.refuse(
                format_args!("{POD_KEY}.runAsNonRoot or {CONTAINER_KEY}.runAsNonRoot"),
                "must be true",
            ));
        }
    }
    // Each level's type, where set, is already RuntimeDefault or Localhost (`shared`).
    if pod.get("seccompProfile").is_none() && container.get("seccompProfile").is_none() {
        return Err(level.refuse(
            format_args!("{POD_KEY}.seccompProfile or {CONTAINER_KEY}.seccompProfile"),
            "must be set (RuntimeDefault or Localhost)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
