//! `xnode-chain`: the Xnode chain's ABCI application, served to CometBFT.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use xnode_chain::abci::AbciApp;
use xnode_chain::params::{development_params, Genesis, GenesisAccount, Source, GENESIS_SCHEMA};
use xnode_chain::store::Store;

#[derive(Parser)]
#[command(
    name = "xnode-chain",
    version,
    about = "The Xnode chain's ABCI application (CometBFT v0.38, ABCI 2.0)",
    long_about = "The state machine Xnode validators agree on: accounts, the attested node \
registry, staking and slashing, per-block data-source assignment and CID records. \
CometBFT connects to it (proxy_app = \"tcp://127.0.0.1:26658\"). See docs/chain.md."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the application to CometBFT over the ABCI socket protocol.
    Serve {
        /// Where CometBFT's `proxy_app` points.
        #[arg(long, default_value = "127.0.0.1:26658")]
        listen: String,
        /// The committed state (state.json); resumed on restart.
        #[arg(long, env = "XNODE_CHAIN_STATE_DIR")]
        state_dir: PathBuf,
    },
    /// Print an `app_state` for genesis.json (development defaults, with
    /// what the flags add).
    Genesis {
        /// ADDRESS=BALANCE (hex Ed25519 key); repeatable.
        #[arg(long = "account")]
        accounts: Vec<String>,
        /// ID=URL; repeatable.
        #[arg(long = "source")]
        sources: Vec<String>,
        /// The account that may add sources and schedule upgrades.
        #[arg(long)]
        authority: Option<String>,
        /// A PEM bundle of EK CA certificates to trust; repeatable. Nodes
        /// register only with an EK certificate chaining to one of them.
        #[arg(long = "ek-ca")]
        ek_cas: Vec<PathBuf>,
        /// Refuse nodes that report a software TPM.
        #[arg(long)]
        no_software_tpm: bool,
    },
    /// Check the `app_state` of a genesis.json (or a bare app_state).
    CheckGenesis { file: PathBuf },
}

fn split_pair<'a>(s: &'a str, what: &str) -> Result<(&'a str, &'a str), String> {
    s.split_once('=')
        .ok_or_else(|| format!("{what} '{s}' is not KEY=VALUE"))
}

fn genesis(
    accounts: &[String],
    sources: &[String],
    authority: Option<String>,
    ek_cas: &[PathBuf],
    no_software_tpm: bool,
) -> Result<Genesis, String> {
    let mut params = development_params();
    params.authority = authority;
    params.allow_software_tpm = !no_software_tpm;
    for p in ek_cas {
        params
            .ek_cas
            .push(std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?);
    }
    let mut g = Genesis {
        schema: GENESIS_SCHEMA.into(),
        params,
        accounts: Vec::new(),
        sources: Vec::new(),
        upgrades: Default::default(),
    };
    for a in accounts {
        let (address, bal) = split_pair(a, "--account")?;
        g.accounts.push(GenesisAccount {
            address: address.into(),
            balance: bal
                .parse()
                .map_err(|_| format!("--account {a}: '{bal}' is not a whole number"))?,
        });
    }
    for s in sources {
        let (id, url) = split_pair(s, "--source")?;
        g.sources.push(Source {
            id: id.into(),
            url: url.into(),
        });
    }
    let bytes = serde_json::to_vec(&g).map_err(|e| e.to_string())?;
    Genesis::parse(&bytes).map_err(|e| e.to_string())
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Cmd::Serve { listen, state_dir } => {
            let store = Store::open(&state_dir).map_err(|e| e.to_string())?;
            let app = AbciApp::open(store).map_err(|e| e.to_string())?;
            let server = tendermint_abci::ServerBuilder::default()
                .bind(&listen, app)
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            eprintln!(
                "xnode-chain: serving ABCI on {} (state in {})",
                server.local_addr(),
                state_dir.display()
            );
            server.listen().map_err(|e| format!("ABCI server: {e}"))
        }
        Cmd::Genesis {
            accounts,
            sources,
            authority,
            ek_cas,
            no_software_tpm,
        } => {
            let g = genesis(&accounts, &sources, authority, &ek_cas, no_software_tpm)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&g).map_err(|e| e.to_string())?
            );
            Ok(())
        }
        Cmd::CheckGenesis { file } => {
            let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let v: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| format!("{}: not JSON: {e}", file.display()))?;
            let app_state = v.get("app_state").unwrap_or(&v);
            let g = Genesis::parse(&serde_json::to_vec(app_state).unwrap_or_default())
                .map_err(|e| format!("{}: {e}", file.display()))?;
            println!(
                "{}: ok ({} accounts, {} sources, {} EK CAs, {} upgrades)",
                file.display(),
                g.accounts.len(),
                g.sources.len(),
                g.params.ek_cas.len(),
                g.upgrades.len()
            );
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xnode-chain: {e}");
            ExitCode::FAILURE
        }
    }
}
