//! Service supervision for an Xnode: the service manifest that the NixOS
//! modules render (docs/manifest.md), systemd over D-Bus, health checks (the
//! manifest's http/tcp/exec and the kinds' own: CometBFT, kubo, the mesh), and the
//! reconcile loop that ties them together.

pub mod cometbft;
pub mod health;
mod http_probe;
pub mod kubo;
pub mod manifest;
pub mod mesh;
pub mod policy;
pub mod reconcile;
pub mod status;
pub mod systemd;

pub use manifest::{Manifest, ManifestError};
