//! Test profiles: the tests an operator defines in the server configuration (`testProfiles`),
//! written with the spec's own `test*` keys plus `testTargets`. A spec names one with
//! `testProfile` and the event supplies only data (the target, the commit, the phases).

use std::collections::BTreeMap;

use serde_json::Value;

use super::{SpecError, TestSpec, keys, target::TargetGlobs, testing::test_plan};

/// One profile: how the test runs, and which test targets it may be given.
#[derive(Debug, Clone)]
pub struct TestProfile {
    /// The test settings, defaults filled, without a target.
    pub(super) test: TestSpec,
    /// The targets it may be given; `None`: those of `policy.testTargets`.
    pub targets: Option<TargetGlobs>,
}

/// The server's profiles by name.
#[derive(Debug, Clone, Default)]
pub struct TestProfiles(BTreeMap<String, TestProfile>);

impl TestProfiles {
    /// Compiles the configuration's `testProfiles`; the error names the profile and the key.
    pub fn parse(
        profiles: &BTreeMap<String, serde_yaml_ng::Mapping>,
    ) -> Result<TestProfiles, String> {
        profiles
            .iter()
            .map(|(name, map)| {
                TestProfile::parse(name, map)
                    .map(|p| (name.clone(), p))
                    .map_err(|e| format!("testProfiles.{name}: {e}"))
            })
            .collect::<Result<_, _>>()
            .map(TestProfiles)
    }

    /// The profile named `name`.
    pub fn get(&self, name: &str) -> Option<&TestProfile> {
        self.0.get(name)
    }

    /// FetchResource: the profile a spec names is one of the server's (`testProfile`).
    pub fn check(&self, resource: &super::Resource) -> Result<(), SpecError> {
        match &resource.test.profile {
            Some(name) => self.named(name).map(drop).map_err(keys::spec_named),
            None => Ok(()),
        }
    }

    /// The profile a spec names, or `INVALID_ARGUMENT` listing the server's.
    pub(super) fn named(&self, name: &str) -> Result<&TestProfile, SpecError> {
        self.get(name).ok_or_else(|| {
            let names: Vec<_> = self.0.keys().map(String::as_str).collect();
            SpecError::invalid(
                "test.profile",
                if names.is_empty() {
                    format!("{name:?}: this server defines no test profile (testProfiles)")
                } else {
                    format!(
                        "{name:?} is not a test profile of this server (it has: {})",
                        names.join(", ")
                    )
                },
            )
        })
    }
}

impl TestProfile {
    fn parse(name: &str, map: &serde_yaml_ng::Mapping) -> Result<TestProfile, String> {
        check_name(name).map_err(|e| e.to_string())?;
        let mut map = map.clone();
        let targets = match map.remove("testTargets") {
            None => Vec::new(),
            Some(serde_yaml_ng::Value::Sequence(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(String::from)
                        .ok_or("testTargets: a list of strings")
                })
                .collect::<Result<_, _>>()?,
            Some(serde_yaml_ng::Value::String(list)) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            Some(_) => return Err("testTargets: a list of strings".into()),
        };
        let targets = TargetGlobs::new(&targets).map_err(|e| format!("testTargets: {e}"))?;
        let json = keys::to_json(map).map_err(|e| e.to_string())?;
        let mut test = Value::Null;
        for (field, value) in json.as_object().into_iter().flatten() {
            if field != "test" {
                return Err(format!(
                    "a profile holds test settings only (test, testImage, testCommand, …), \
                     not the resource's `{field}`"
                ));
            }
            test = value.clone();
        }
        let mut test: TestSpec = serde_path_to_error::deserialize(test).map_err(|e| {
            keys::spec_named(SpecError::invalid(
                &format!("test.{}", e.path()),
                e.inner().to_string(),
            ))
            .to_string()
        })?;
        if !test.target.is_empty() || test.profile.is_some() {
            return Err(
                "testTarget and testProfile come from the spec and the event, \
                        not from a profile"
                    .into(),
            );
        }
        if test.runner.is_none() {
            return Err("`test` (the runner: job, http, command or none) is required".into());
        }
        test.fill_defaults();
        test_plan(&test).map_err(|e| keys::spec_named(e).to_string())?;
        Ok(TestProfile { test, targets })
    }
}

/// A profile's name: a DNS label, so it reads the same in a spec, a log and a metric.
pub(super) fn check_name(name: &str) -> Result<(), SpecError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(SpecError::invalid(
            "test.profile",
            format!("{name:?} is not a profile name (lowercase letters, digits and '-')"),
        ))
    }
}

/// With `testProfile`, the profile says how the test runs: the spec (and its parameters) may
/// set only the target. The error names the first other test key set.
pub(super) fn only_target(t: &TestSpec) -> Result<(), SpecError> {
    let json = serde_json::to_value(t).unwrap_or_default();
    let extra = json
        .as_object()
        .into_iter()
        .flatten()
        .find(|(field, value)| !value.is_null() && !matches!(field.as_str(), "profile" | "target"));
    match extra {
        Some((field, _)) => Err(SpecError::invalid(
            &format!("test.{field}"),
            "is the test profile's to set: with testProfile, a spec gives only testTarget",
        )),
        None => check_name(t.profile.as_deref().unwrap_or_default()),
    }
}
