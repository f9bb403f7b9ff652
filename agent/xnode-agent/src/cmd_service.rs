//! `xnode-agent service init NAME`: prepare a service's home from its
//! manifest settings before it starts (the NixOS modules run it as the
//! unit's ExecStartPre): CometBFT's config, genesis and keys; kubo's
//! repository config. Safe to run at every start: keys are never
//! overwritten and files are written only when their content changes.
//! Bootstrap peers from the first-boot configuration, when the node has
//! one, are added to the manifest's own.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use supervisor::manifest::Kind;

#[derive(Debug, clap::Subcommand)]
pub enum ServiceCommand {
    /// Initialise or update a service's home from the manifest's settings.
    Init {
        /// The service's name in the manifest.
        name: String,
        #[command(flatten)]
        manifest: crate::cmd_run::ManifestArg,
        /// The installed first-boot configuration; ignored when absent.
        #[arg(
            long,
            env = "XNODE_NODE_CONFIG",
            default_value = "/var/lib/xnode/firstboot.json"
        )]
        node_config: PathBuf,
    },
}

pub fn run(cmd: ServiceCommand) -> anyhow::Result<ExitCode> {
    let ServiceCommand::Init {
        name,
        manifest,
        node_config,
    } = cmd;
    let (m, _) = crate::cmd_run::load_manifest(&manifest.path).map_err(anyhow::Error::msg)?;
    let service = m
        .services
        .iter()
        .find(|s| s.name == name)
        .with_context(|| {
            format!(
                "{} declares no service named '{name}'",
                manifest.path.display()
            )
        })?;
    let settings_error = |problems: Vec<(String, String)>| {
        let list: Vec<String> = problems
            .into_iter()
            .map(|(f, m)| format!("settings.{f}: {m}"))
            .collect();
        anyhow::anyhow!("{name}: {}", list.join("; "))
    };
    let mut settings = service.settings.clone();
    if let Some(c) = crate::node_config::load(&node_config)? {
        let (key, peers) = match service.kind {
            Kind::Cometbft => ("persistent_peers", &c.bootstrap.cometbft),
            Kind::Kubo => ("bootstrap", &c.bootstrap.ipfs),
            Kind::Mesh => ("bootstrap", &c.bootstrap.mesh),
            Kind::Generic => ("", &Vec::new()),
        };
        if !peers.is_empty() {
            println!(
                "{name}: {} bootstrap peer(s) from {}",
                peers.len(),
                node_config.display()
            );
        }
        crate::node_config::extend_list(&mut settings, key, peers);
    }
    match service.kind {
        Kind::Cometbft => {
            let s = supervisor::cometbft::Settings::parse(&settings).map_err(settings_error)?;
            let report = supervisor::cometbft::init_home(&s)?;
            print!("{report}");
        }
        Kind::Kubo => {
            let s = supervisor::kubo::Settings::parse(&settings).map_err(settings_error)?;
            let report = supervisor::kubo::configure(&s)?;
            println!("{report}");
        }
        Kind::Mesh | Kind::Generic => {
            println!(
                "{name}: a {:?} service has nothing to initialise",
                service.kind
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
