use clap::ValueEnum;
use serde_json::{Value, json};

use super::PodSecurityLevel::{Baseline, Restricted};
use super::*;

/// The verdict on a spec's two contexts, merged over the defaults as the Job runner does.
fn verdict(level: PodSecurityLevel, pod: Value, container: Value) -> Result<(), String> {
    check(
        level,
        &pod_context(Some(&pod)),
        &container_context(Some(&container)),
    )
}

fn pod(level: PodSecurityLevel, pod: Value) -> Result<(), String> {
    verdict(level, pod, json!({}))
}

fn container(level: PodSecurityLevel, container: Value) -> Result<(), String> {
    verdict(level, json!({}), container)
}

#[track_caller]
fn refused(verdict: Result<(), String>, words: &[&str]) -> String {
    let e = verdict.expect_err("refused");
    for word in words {
        assert!(e.contains(word), "{e:?} lacks {word:?}");
    }
    assert!(!e.contains('\n'), "{e:?}");
    e
}

#[test]
fn the_defaults_pass_restricted() {
    assert_eq!(
        check(Restricted, &pod_context(None), &container_context(None)),
        Ok(())
    );
    assert_eq!(verdict(Restricted, json!({}), json!({})), Ok(()));
}

#[test]
fn a_spec_object_is_merged_over_the_defaults_key_by_key() {
    assert_eq!(
        pod_context(Some(&json!({"runAsUser": 1000}))),
        json!({"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}, "runAsUser": 1000})
    );
    assert_eq!(
        container_context(Some(&json!({"capabilities": {"drop": ["ALL", "CHOWN"]}}))),
        json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL", "CHOWN"]}})
    );
    assert_eq!(pod_context(Some(&Value::Null)), pod_context(None));
}

#[test]
fn a_spec_that_is_not_an_object_is_kept_and_refused() {
    let pod = pod_context(Some(&json!("root")));
    assert_eq!(pod, json!("root"));
    let e = check(Restricted, &pod, &container_context(None)).expect_err("not an object");
    assert!(
        e.starts_with("testPodSecurityContext must be a JSON object"),
        "{e}"
    );
    let e = check(Baseline, &pod_context(None), &json!([1])).expect_err("not an object");
    assert!(
        e.starts_with("testSecurityContext must be a JSON object"),
        "{e}"
    );
}

#[test]
fn the_privileged_attack_is_refused_at_both_levels() {
    let attack = json!({"privileged": true, "capabilities": {"add": ["SYS_ADMIN"]}});
    assert_eq!(
        container(Restricted, attack.clone()),
        Err(
            "testSecurityContext.privileged must not be true (Pod Security \"restricted\"; the \
             operator's policy.testPodSecurity allows at most \"restricted\")"
                .to_string()
        )
    );
    refused(
        container(Baseline, attack),
        &["testSecurityContext.privileged", "\"baseline\""],
    );
    assert_eq!(container(Baseline, json!({"privileged": false})), Ok(()));
}

#[test]
fn added_capabilities_are_limited_to_the_levels_set() {
    let add = |caps: &[&str]| json!({"capabilities": {"add": caps, "drop": ["ALL"]}});
    for level in [Restricted, Baseline] {
        for bad in ["SYS_ADMIN", "NET_ADMIN", "ALL", "CAP_SYS_ADMIN", "chown"] {
            refused(
                container(level, add(&[bad])),
                &["testSecurityContext.capabilities.add", bad],
            );
        }
        assert_eq!(container(level, add(&["NET_BIND_SERVICE"])), Ok(()));
    }
    assert_eq!(
        container(Baseline, add(&["CHOWN", "SETUID", "SYS_CHROOT"])),
        Ok(())
    );
    refused(
        container(Restricted, add(&["CHOWN"])),
        &["NET_BIND_SERVICE", "\"CHOWN\""],
    );
}

#[test]
fn restricted_needs_all_capabilities_dropped() {
    // `capabilities` replaces the default's as a whole: an `add` alone loses the drop.
    let add_only = json!({"capabilities": {"add": ["NET_BIND_SERVICE"]}});
    refused(
        container(Restricted, add_only.clone()),
        &["testSecurityContext.capabilities.drop must include \"ALL\""],
    );
    refused(
        container(Restricted, json!({"capabilities": null})),
        &["capabilities.drop"],
    );
    assert_eq!(container(Baseline, add_only), Ok(()));
}

#[test]
fn restricted_needs_privilege_escalation_off() {
    for value in [json!(true), Value::Null] {
        let spec = json!({"allowPrivilegeEscalation": value});
        refused(
            container(Restricted, spec.clone()),
            &["testSecurityContext.allowPrivilegeEscalation must be false"],
        );
        assert_eq!(container(Baseline, spec), Ok(()));
    }
}

#[test]
fn a_run_as_user_keeps_the_restricted_defaults() {
    assert_eq!(pod(Restricted, json!({"runAsUser": 1000})), Ok(()));
    assert_eq!(container(Restricted, json!({"runAsUser": 1000})), Ok(()));
}

#[test]
fn root_is_refused_at_restricted_and_allowed_at_baseline() {
    refused(
        pod(Restricted, json!({"runAsUser": 0})),
        &[
            "testPodSecurityContext.runAsUser must not be 0",
            "\"restricted\"",
        ],
    );
    refused(
        container(Restricted, json!({"runAsUser": 0})),
        &["testSecurityContext.runAsUser"],
    );
    assert_eq!(
        pod(Baseline, json!({"runAsUser": 0, "runAsNonRoot": false})),
        Ok(())
    );
    assert_eq!(container(Baseline, json!({"runAsUser": 0})), Ok(()));
}

#[test]
fn restricted_needs_run_as_non_root_at_one_level_and_false_at_none() {
    refused(
        verdict(
            Restricted,
            json!({"runAsNonRoot": false}),
            json!({"runAsNonRoot": true}),
        ),
        &["testPodSecurityContext.runAsNonRoot must not be false"],
    );
    refused(
        container(Restricted, json!({"runAsNonRoot": false})),
        &["testSecurityContext.runAsNonRoot must not be false"],
    );
    refused(
        pod(Restricted, json!({"runAsNonRoot": null})),
        &["testPodSecurityContext.runAsNonRoot or testSecurityContext.runAsNonRoot must be true"],
    );
    assert_eq!(
        verdict(
            Restricted,
            json!({"runAsNonRoot": null}),
            json!({"runAsNonRoot": true})
        ),
        Ok(())
    );
    assert_eq!(pod(Baseline, json!({"runAsNonRoot": null})), Ok(()));
}

#[test]
fn seccomp_must_not_be_unconfined_and_restricted_needs_it_at_one_level() {
    for level in [Restricted, Baseline] {
        let unconfined = json!({"seccompProfile": {"type": "Unconfined"}});
        refused(
            pod(level, unconfined.clone()),
            &[
                "testPodSecurityContext.seccompProfile.type",
                "\"Unconfined\"",
                level.as_str(),
            ],
        );
        refused(
            container(level, unconfined),
            &["testSecurityContext.seccompProfile.type"],
        );
        let localhost =
            json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}});
        assert_eq!(container(level, localhost), Ok(()));
    }
    let none = json!({"seccompProfile": null});
    refused(
        pod(Restricted, none.clone()),
        &[
            "testPodSecurityContext.seccompProfile or testSecurityContext.seccompProfile must be set",
        ],
    );
    let in_container = json!({"seccompProfile": {"type": "RuntimeDefault"}});
    assert_eq!(verdict(Restricted, none.clone(), in_container), Ok(()));
    assert_eq!(pod(Baseline, none), Ok(()));
    refused(
        pod(Baseline, json!({"seccompProfile": {}})),
        &["testPodSecurityContext.seccompProfile.type is required"],
    );
}

#[test]
fn app_armor_must_not_be_unconfined() {
    for level in [Restricted, Baseline] {
        refused(
            pod(level, json!({"appArmorProfile": {"type": "Unconfined"}})),
            &["testPodSecurityContext.appArmorProfile.type"],
        );
        refused(
            container(level, json!({"appArmorProfile": {"type": "Unconfined"}})),
            &["testSecurityContext.appArmorProfile.type"],
        );
        assert_eq!(
            container(
                level,
                json!({"appArmorProfile": {"type": "RuntimeDefault"}})
            ),
            Ok(())
        );
    }
}

#[test]
fn se_linux_allows_only_the_container_types_and_no_user_or_role() {
    for level in [Restricted, Baseline] {
        for good in [
            "",
            "container_t",
            "container_init_t",
            "container_kvm_t",
            "container_engine_t",
        ] {
            let spec =
                json!({"seLinuxOptions": {"type": good, "level": "s0:c123,c456", "role": ""}});
            assert_eq!(pod(level, spec.clone()), Ok(()));
            assert_eq!(container(level, spec), Ok(()));
        }
        refused(
            container(level, json!({"seLinuxOptions": {"type": "spc_t"}})),
            &["testSecurityContext.seLinuxOptions.type", "\"spc_t\""],
        );
        for field in ["user", "role"] {
            refused(
                pod(level, json!({"seLinuxOptions": {field: "system_u"}})),
                &[&format!(
                    "testPodSecurityContext.seLinuxOptions.{field} must not be set"
                )],
            );
        }
    }
}

#[test]
fn proc_mount_must_be_default() {
    for level in [Restricted, Baseline] {
        refused(
            container(level, json!({"procMount": "Unmasked"})),
            &["testSecurityContext.procMount must be Default"],
        );
        assert_eq!(container(level, json!({"procMount": "Default"})), Ok(()));
    }
}

#[test]
fn host_process_is_refused_at_both_levels() {
    let host =
        json!({"windowsOptions": {"hostProcess": true, "runAsUserName": "NT AUTHORITY\\SYSTEM"}});
    for level in [Restricted, Baseline] {
        refused(
            pod(level, host.clone()),
            &["testPodSecurityContext.windowsOptions.hostProcess must not be true"],
        );
        refused(
            container(level, host.clone()),
            &["testSecurityContext.windowsOptions.hostProcess"],
        );
        assert_eq!(
            container(level, json!({"windowsOptions": {"hostProcess": false}})),
            Ok(())
        );
    }
}

#[test]
fn only_safe_sysctls_are_allowed() {
    let sysctls = |name: &str| json!({"sysctls": [{"name": "net.ipv4.tcp_syncookies", "value": "1"}, {"name": name, "value": "1"}]});
    for level in [Restricted, Baseline] {
        assert_eq!(pod(level, sysctls("net.ipv4.tcp_keepalive_probes")), Ok(()));
        refused(
            pod(level, sysctls("kernel.msgmax")),
            &[
                "testPodSecurityContext.sysctls[1].name",
                "\"kernel.msgmax\"",
            ],
        );
    }
}

#[test]
fn unknown_fields_are_refused() {
    refused(
        pod(Baseline, json!({"hostNetwork": true})),
        &["testPodSecurityContext has the field \"hostNetwork\""],
    );
    refused(
        container(Baseline, json!({"runAsNonroot": true})),
        &["testSecurityContext has the field \"runAsNonroot\""],
    );
    refused(
        container(
            Baseline,
            json!({"seccompProfile": {"type": "RuntimeDefault", "extra": 1}}),
        ),
        &["testSecurityContext.seccompProfile has the field \"extra\""],
    );
    // A pod field in the container's context (and the reverse) is not a field there.
    refused(
        container(Baseline, json!({"fsGroup": 1000})),
        &["\"fsGroup\""],
    );
    refused(
        pod(Baseline, json!({"privileged": false})),
        &["\"privileged\""],
    );
}

#[test]
fn every_kubernetes_field_is_known() {
    let pod_spec = json!({
        "fsGroup": 1000, "fsGroupChangePolicy": "OnRootMismatch", "runAsGroup": 1000,
        "runAsNonRoot": true, "runAsUser": 1000, "seLinuxChangePolicy": "MountOption",
        "seLinuxOptions": {"level": "s0"}, "seccompProfile": {"type": "RuntimeDefault"},
        "appArmorProfile": {"type": "RuntimeDefault"}, "supplementalGroups": [1, 2],
        "supplementalGroupsPolicy": "Strict", "sysctls": [], "windowsOptions": {},
    });
    let container_spec = json!({
        "allowPrivilegeEscalation": false, "appArmorProfile": {"type": "Localhost",
        "localhostProfile": "k8s-apparmor-example"}, "capabilities": {"drop": ["ALL"]},
        "privileged": false, "procMount": "Default", "readOnlyRootFilesystem": true,
        "runAsGroup": 0, "runAsNonRoot": true, "runAsUser": 1000, "seLinuxOptions": {},
        "seccompProfile": {"type": "RuntimeDefault"}, "windowsOptions": {"gmsaCredentialSpecName": "x"},
    });
    assert_eq!(verdict(Restricted, pod_spec, container_spec), Ok(()));
}

#[test]
fn a_value_of_the_wrong_type_is_refused() {
    refused(
        container(Baseline, json!({"privileged": "true"})),
        &["testSecurityContext.privileged must be true or false, got \"true\""],
    );
    refused(
        pod(Baseline, json!({"runAsUser": "0"})),
        &["testPodSecurityContext.runAsUser must be an integer"],
    );
    refused(
        container(Baseline, json!({"capabilities": {"add": "SYS_ADMIN"}})),
        &["testSecurityContext.capabilities.add must be a list of strings"],
    );
    refused(
        pod(Baseline, json!({"supplementalGroups": [1, "2"]})),
        &["testPodSecurityContext.supplementalGroups must be a list of integers"],
    );
    refused(
        pod(Baseline, json!({"sysctls": [{"value": "1"}]})),
        &["testPodSecurityContext.sysctls[0].name is required"],
    );
    refused(
        pod(Baseline, json!({"seLinuxOptions": "spc_t"})),
        &["must be a JSON object"],
    );
}

#[test]
fn a_message_quotes_at_most_a_short_piece_of_a_value() {
    let huge = format!("{}\nline two", "x".repeat(10_000));
    for spec in [
        json!({"seLinuxOptions": {"type": huge}}),
        json!({"privileged": huge}),
        json!({huge.clone(): true}),
    ] {
        let e = refused(container(Baseline, spec), &["…"]);
        assert!(e.len() < 300, "{} chars: {e}", e.len());
    }
}

#[test]
fn the_level_reads_and_prints_lowercase_and_defaults_to_restricted() {
    assert_eq!(PodSecurityLevel::default(), Restricted);
    let read: PodSecurityLevel = serde_json::from_value(json!("baseline")).expect("baseline");
    assert_eq!(read, Baseline);
    assert!(serde_json::from_value::<PodSecurityLevel>(json!("privileged")).is_err());
    assert_eq!(Restricted.to_string(), "restricted");
    assert_eq!(Baseline.to_string(), "baseline");
    assert_eq!(PodSecurityLevel::from_str("baseline", false), Ok(Baseline));
    assert!(PodSecurityLevel::from_str("privileged", false).is_err());
}
