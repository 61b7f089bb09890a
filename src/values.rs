//! placeholder until the helper's module lands
#[derive(Debug, thiserror::Error)]
pub enum ValuesError {
    #[error("values file is not valid YAML: {0}")]
    Invalid(String),
    #[error("key `{0}` not found in values file")]
    KeyMissing(String),
    #[error("key `{key}` is not a scalar ({found})")]
    NotScalar { key: String, found: &'static str },
    #[error("value for key `{key}` is not allowed: {reason}")]
    BadValue { key: String, reason: &'static str },
}
pub fn read_scalar(_text: &str, key: &str) -> Result<String, ValuesError> {
    Err(ValuesError::KeyMissing(key.into()))
}
pub fn set_scalar(_text: &str, key: &str, _value: &str) -> Result<String, ValuesError> {
    Err(ValuesError::KeyMissing(key.into()))
}
