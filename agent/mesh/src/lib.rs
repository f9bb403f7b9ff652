//! The Xnode mesh: a libp2p node (TCP and QUIC, Noise, Yamux, Identify,
//! Ping, Kademlia, Gossipsub, Request-Response) under the node's Ed25519
//! key, so its PeerId is the one its attestations carry.
//!
//! - [`record`]: Service Mesh Worker records, signed and published in the DHT;
//! - [`observe`]: signed metrics and attestations on gossipsub, validated
//!   before they are forwarded, aggregated per service;
//! - [`delegate`]: tasks placed on nodes whose attested resources fit;
//! - [`node`]: the swarm and its event loop, driven through a [`node::Mesh`] handle.
//!
//! Protocols, topics and formats: docs/mesh.md.

pub mod attested;
pub mod delegate;
pub mod error;
pub mod key;
pub mod node;
pub mod observe;
pub mod record;
pub mod resources;
pub mod score;
pub mod signed;
pub mod trim;

pub use error::{MeshError, Rejected};
pub use node::{Config, Mesh, Transport};
pub use record::{Offer, ServiceRecord, Visibility};
pub use resources::Resources;
pub use trim::Watermarks;
