//! Service supervision for an Xnode: the service manifest that the NixOS
//! modules render (docs/manifest.md), and, as it lands, the reconcile loop
//! over systemd and the services' health checks.

pub mod manifest;
pub mod systemd;

pub use manifest::{Manifest, ManifestError};
