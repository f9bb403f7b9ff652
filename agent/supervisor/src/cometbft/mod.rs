//! CometBFT: the typed `settings` of a `cometbft` service, the node home
//! (config.toml rendered from the settings, genesis installed, keys made once)
//! and the kind's health check through tendermint-rpc (/status, /net_info).
//!
//! Formats follow CometBFT v0.38 (see docs/cometbft.md): `p2p/key.go`,
//! `privval/file.go`, `crypto/ed25519` and `config/toml.go`.
//!
//! - `settings`: `Settings`, their parsing and validation (listen address
//!   and peer syntax, the `config` overrides);
//! - `keys`: key generation, CometBFT's key JSON formats, addresses and node
//!   ids;
//! - `home`: `init_home` (config.toml rendering, genesis install, keys and
//!   sign state written atomically), its report and errors;
//! - `health`: `Health`, `rpc_url` and the RPC dialect (`COMPAT_MODE`).

mod health;
mod home;
mod keys;
mod settings;

pub use health::{rpc_client, rpc_url, Health, COMPAT_MODE};
pub use home::{init_home, render_config, Action, FileOutcome, InitError, InitReport};
pub use keys::{node_id, node_id_of, pubkey_address, validator_address_of};
pub use settings::Settings;
