//! `xnode-agent service init NAME`: prepare a service's home from its
//! manifest settings before it starts (the NixOS modules run it as the
//! unit's ExecStartPre): CometBFT's config, genesis and keys; kubo's
//! repository config. Safe to run at every start: keys are never
//! overwritten and files are written only when their content changes.

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
        #[arg(
            long,
            env = "XNODE_MANIFEST",
            default_value = "/etc/xnode/manifest.json"
        )]
        manifest: PathBuf,
    },
}

pub fn run(cmd: ServiceCommand) -> anyhow::Result<ExitCode> {
    let ServiceCommand::Init { name, manifest } = cmd;
    let (m, _) = crate::cmd_run::load_manifest(&manifest).map_err(anyhow::Error::msg)?;
    let service = m
        .services
        .iter()
        .find(|s| s.name == name)
        .with_context(|| format!("{} declares no service named '{name}'", manifest.display()))?;
    let settings_error = |problems: Vec<(String, String)>| {
        let list: Vec<String> = problems
            .into_iter()
            .map(|(f, m)| format!("settings.{f}: {m}"))
            .collect();
        anyhow::anyhow!("{name}: {}", list.join("; "))
    };
    match service.kind {
        Kind::Cometbft => {
            let s =
                supervisor::cometbft::Settings::parse(&service.settings).map_err(settings_error)?;
            let report = supervisor::cometbft::init_home(&s)?;
            print!("{report}");
        }
        Kind::Kubo => {
            let s = supervisor::kubo::Settings::parse(&service.settings).map_err(settings_error)?;
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
