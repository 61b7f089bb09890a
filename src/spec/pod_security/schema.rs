//! A securityContext as Kubernetes 1.33 defines it (k8s-openapi `v1_33`): the closed lists of
//! fields, and a reader that refuses a field a context has not or a value of the wrong type,
//! naming the field by its path from the spec key.

use serde_json::{Map, Value};

/// The fields of a PodSecurityContext in Kubernetes 1.33 (k8s-openapi `v1_33`).
pub(super) const POD_FIELDS: &[&str] = &[
    "appArmorProfile",
    "fsGroup",
    "fsGroupChangePolicy",
    "runAsGroup",
    "runAsNonRoot",
    "runAsUser",
    "seLinuxChangePolicy",
    "seLinuxOptions",
    "seccompProfile",
    "supplementalGroups",
    "supplementalGroupsPolicy",
    "sysctls",
    "windowsOptions",
];
/// The fields of a container SecurityContext in Kubernetes 1.33.
pub(super) const CONTAINER_FIELDS: &[&str] = &[
    "allowPrivilegeEscalation",
    "appArmorProfile",
    "capabilities",
    "privileged",
    "procMount",
    "readOnlyRootFilesystem",
    "runAsGroup",
    "runAsNonRoot",
    "runAsUser",
    "seLinuxOptions",
    "seccompProfile",
    "windowsOptions",
];
pub(super) const SE_LINUX_FIELDS: &[&str] = &["level", "role", "type", "user"];
pub(super) const PROFILE_FIELDS: &[&str] = &["localhostProfile", "type"];
pub(super) const WINDOWS_FIELDS: &[&str] = &[
    "gmsaCredentialSpec",
    "gmsaCredentialSpecName",
    "hostProcess",
    "runAsUserName",
];
pub(super) const CAPABILITY_FIELDS: &[&str] = &["add", "drop"];
pub(super) const SYSCTL_FIELDS: &[&str] = &["name", "value"];

/// A message quotes at most this many characters of a value: a spec is untrusted and may be
/// large, and an error is one line in a log and a gRPC status.
pub(super) const QUOTE_CHARS: usize = 64;

/// One JSON object of a securityContext, named by its path from the spec key for messages.
/// A field set to `null` counts as unset, as Kubernetes reads it.
pub(super) struct Context<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Context<'a> {
    /// `value` as an object holding only `fields`.
    pub(super) fn new(
        path: String,
        value: &'a Value,
        fields: &[&str],
        what: &str,
    ) -> Result<Self, String> {
        let Value::Object(map) = value else {
            return Err(format!(
                "{path} must be a JSON object ({what}), got {}",
                quote(value)
            ));
        };
        if let Some(unknown) = map.keys().find(|k| !fields.contains(&k.as_str())) {
            return Err(format!(
                "{path} has the field {}, which {what} of Kubernetes 1.33 does not have",
                quote_str(unknown)
            ));
        }
        Ok(Context { path, map })
    }

    pub(super) fn path(&self, field: &str) -> String {
        format!("{}.{field}", self.path)
    }

    pub(super) fn get(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    pub(super) fn typed<T>(
        &self,
        field: &str,
        kind: &str,
        read: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Result<Option<T>, String> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => match read(v) {
                Some(t) => Ok(Some(t)),
                None => Err(format!(
                    "{} must be {kind}, got {}",
                    self.path(field),
                    quote(v)
                )),
            },
        }
    }

    pub(super) fn bool(&self, field: &str) -> Result<Option<bool>, String> {
        self.typed(field, "true or false", Value::as_bool)
    }

    pub(super) fn int(&self, field: &str) -> Result<Option<i64>, String> {
        self.typed(field, "an integer", Value::as_i64)
    }

    pub(super) fn str(&self, field: &str) -> Result<Option<&'a str>, String> {
        self.typed(field, "a string", Value::as_str)
    }

    pub(super) fn list<T>(
        &self,
        field: &str,
        kind: &str,
        read: impl Fn(&'a Value) -> Option<T>,
    ) -> Result<Vec<T>, String> {
        let Some(value) = self.get(field) else {
            return Ok(Vec::new());
        };
        value
            .as_array()
            .and_then(|items| items.iter().map(&read).collect())
            .ok_or_else(|| format!("{} must be {kind}, got {}", self.path(field), quote(value)))
    }

    pub(super) fn strings(&self, field: &str) -> Result<Vec<&'a str>, String> {
        self.list(field, "a list of strings", Value::as_str)
    }

    pub(super) fn ints(&self, field: &str) -> Result<Vec<i64>, String> {
        self.list(field, "a list of integers", Value::as_i64)
    }

    pub(super) fn object(
        &self,
        field: &str,
        fields: &[&str],
        what: &str,
    ) -> Result<Option<Self>, String> {
        self.get(field)
            .map(|v| Context::new(self.path(field), v, fields, what))
            .transpose()
    }

    pub(super) fn objects(
        &self,
        field: &str,
        fields: &[&str],
        what: &str,
    ) -> Result<Vec<Self>, String> {
        let items = self.typed(field, "a list of objects", Value::as_array)?;
        items
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, v)| Context::new(format!("{}[{i}]", self.path(field)), v, fields, what))
            .collect()
    }
}

/// `value` as compact JSON, cut at [`QUOTE_CHARS`] characters.
pub(super) fn quote(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(QUOTE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

pub(super) fn quote_str(s: &str) -> String {
    quote(&Value::from(s))
}
