//! The mesh (`xnode-agent mesh run`): the `settings` of a `mesh` service,
//! checked here so that `manifest check` and the agent refuse bad ones
//! before the mesh starts, and the kind's health check over the mesh's own
//! API.
//!
//! - `settings`: `Settings`, their parsing and validation;
//! - `health`: `Health`, `GET /v1/status` on the mesh's API socket.

mod health;
mod settings;

pub use health::{Health, DEFAULT_API};
pub use settings::Settings;
