//! One inventory section: the value, or the reason it could not be read.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ProbeError;

/// Serialized as `{"ok": {...}}` or `{"error": "why"}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Section<T> {
    Ok(T),
    Error(String),
}

impl<T> Section<T> {
    pub fn is_ok(&self) -> bool {
        matches!(self, Section::Ok(_))
    }

    pub fn ok(&self) -> Option<&T> {
        match self {
            Section::Ok(v) => Some(v),
            Section::Error(_) => None,
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            Section::Ok(_) => None,
            Section::Error(e) => Some(e),
        }
    }
}

impl<T> From<Result<T, ProbeError>> for Section<T> {
    fn from(r: Result<T, ProbeError>) -> Self {
        match r {
            Ok(v) => Section::Ok(v),
            Err(e) => Section::Error(e.to_string()),
        }
    }
}
