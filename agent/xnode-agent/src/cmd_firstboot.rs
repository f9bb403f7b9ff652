//! `xnode-agent firstboot check|install FILE`: the first-boot configuration
//! (`xnode.firstboot/v1`, see node_config.rs and docs/operator.md). The
//! NixOS first-boot unit finds the file on the boot medium or in cloud
//! user data and installs it here; nothing is written unless all of it is
//! valid.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::node_config::{self, NodeConfig};

#[derive(Debug, clap::Subcommand)]
pub enum FirstbootCommand {
    /// Check a first-boot file; print each problem with its field. Exit 1 if any.
    Check {
        file: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Install a first-boot file into the state directory (firstboot.json, authorized_keys).
    Install {
        file: PathBuf,
        #[arg(long, env = "XNODE_STATE_DIR", default_value = "/var/lib/xnode")]
        state_dir: PathBuf,
        /// Replace a different configuration installed before.
        #[arg(long)]
        force: bool,
    },
}

pub fn run(cmd: FirstbootCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        FirstbootCommand::Check { file, json } => check(&file, json),
        FirstbootCommand::Install {
            file,
            state_dir,
            force,
        } => install(&file, &state_dir, force),
    }
}

fn read(file: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(file).with_context(|| format!("reading {}", file.display()))
}

fn check(file: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let result = node_config::parse(&read(file)?);
    if json {
        let v = match &result {
            Ok(c) => serde_json::json!({"ok": true, "config": c}),
            Err(p) => serde_json::json!({"ok": false, "problems": p}),
        };
        println!("{v}");
    } else {
        match &result {
            Ok(c) => println!("{}: valid ({})", file.display(), describe(c)),
            Err(p) => {
                for problem in p {
                    eprintln!("{}: {problem}", file.display());
                }
            }
        }
    }
    Ok(if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn describe(c: &NodeConfig) -> String {
    format!(
        "role {:?}, {} owner key(s), bootstrap: {} CometBFT, {} IPFS, {} mesh peer(s)",
        c.role,
        c.owner_keys.len(),
        c.bootstrap.cometbft.len(),
        c.bootstrap.ipfs.len(),
        c.bootstrap.mesh.len()
    )
    .to_lowercase()
}

fn install(file: &Path, state_dir: &Path, force: bool) -> anyhow::Result<ExitCode> {
    let config = node_config::parse(&read(file)?)
        .map_err(|p| anyhow::anyhow!("{}: not installed: {}", file.display(), p.join("; ")))?;
    let target = state_dir.join(node_config::FILE);
    if let Some(existing) = node_config::load(&target)? {
        if existing == config {
            println!(
                "{}: already installed ({})",
                target.display(),
                describe(&config)
            );
            return Ok(ExitCode::SUCCESS);
        }
        if !force {
            anyhow::bail!(
                "{} already holds a different first-boot configuration: pass --force to replace it",
                target.display()
            );
        }
    }
    let mut keys = config.owner_keys.join("\n");
    if !keys.is_empty() {
        keys.push('\n');
    }
    let keys_path = state_dir.join(node_config::AUTHORIZED_KEYS);
    write_public(&keys_path, keys.as_bytes())?;
    let mut doc = serde_json::to_vec_pretty(&config)?;
    doc.push(b'\n');
    // Last, so a node whose install was cut short tries again next boot.
    write_public(&target, &doc)?;
    println!("{}: installed ({})", target.display(), describe(&config));
    Ok(ExitCode::SUCCESS)
}

/// Atomic and durable, then world-readable: public keys and addresses
/// that the services' own users read at start.
fn write_public(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    xnode_verify::files::write_private(path, bytes)
        .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)))
        .with_context(|| format!("writing {}", path.display()))
}
