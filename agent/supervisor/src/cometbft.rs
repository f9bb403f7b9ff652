//! CometBFT: the node home (config.toml, genesis, keys made once) and its
//! health through tendermint-rpc (/status, /net_info).

use crate::health::KindReport;

/// The `settings` of a `cometbft` service.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Settings {
    pub home: std::path::PathBuf,
    pub rpc_laddr: String,
}

impl Settings {
    /// Parse a service's `settings`; problems are (field, message), the
    /// field relative to `settings`.
    pub fn parse(
        map: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Settings, Vec<(String, String)>> {
        crate::manifest::settings_from_map(map)
    }
}

/// The kind's own health check.
#[derive(Debug)]
pub struct Health {
    settings: Settings,
}

impl Health {
    pub fn new(settings: Settings) -> Health {
        Health { settings }
    }

    pub async fn check(&mut self) -> KindReport {
        KindReport::unhealthy(format!(
            "the CometBFT check of {} is not built yet",
            self.settings.rpc_laddr
        ))
    }
}
