//! kubo (IPFS): the `settings` of a `kubo` service, the patch the agent
//! applies to the repository's `config` after `ipfs init`, and the kind's
//! health check over kubo's RPC (`id`, `swarm/peers`, `repo/stat`).
//!
//! - `settings`: `Settings`, their parsing and validation, kubo's sizes;
//! - `multiaddr`: the multiaddrs and peer IDs in the settings, parsed;
//! - `configure`: the patch of `<repo>/config`, its report and errors;
//! - `health`: `Health` and the thin RPC client it calls;
//! - `add`: `ipfs add` with the options the chain's CIDs are made with.
//!
//! The RPC calls go through the thin typed client in `health` (`Rpc`, over
//! reqwest), not through ipfs-api-backend-hyper 0.6: that crate's `id` and
//! `swarm peers` responses no longer deserialize from current kubo and its
//! repo stat (`stats_repo`) drops `StorageMax` (docs/kubo.md, and the
//! `contract_` test that shows it).

pub mod add;
mod configure;
mod health;
mod multiaddr;
mod settings;

pub use configure::{configure, Change, ConfigureError, ConfigureReport};
pub use health::Health;
pub use settings::Settings;
