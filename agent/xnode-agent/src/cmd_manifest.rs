//! `xnode-agent manifest check`: validate a service manifest, pointing at
//! each field at fault.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use supervisor::Manifest;

#[derive(Debug, clap::Subcommand)]
pub enum ManifestCommand {
    /// Check a manifest; print each problem with its field. Exit 1 if any.
    Check {
        /// The manifest (e.g. /etc/xnode/manifest.json).
        file: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: ManifestCommand) -> anyhow::Result<ExitCode> {
    let ManifestCommand::Check { file, json } = cmd;
    let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let result = Manifest::parse(&bytes);
    if json {
        let v = match &result {
            Ok(m) => serde_json::json!({
                "ok": true,
                "services": m.start_order().unwrap_or_default().iter().map(|s| &s.name).collect::<Vec<_>>(),
            }),
            Err(problems) => serde_json::json!({
                "ok": false,
                "problems": problems.iter().map(|p| serde_json::json!({"path": p.path, "message": p.message})).collect::<Vec<_>>(),
            }),
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        match &result {
            Ok(m) => {
                let order: Vec<&str> = m
                    .start_order()
                    .unwrap_or_default()
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect();
                println!(
                    "{}: valid, {} service(s); start order: {}",
                    file.display(),
                    m.services.len(),
                    order.join(" → ")
                );
            }
            Err(problems) => {
                for p in problems {
                    println!("{}: {p}", file.display());
                }
                println!(
                    "{}: invalid ({} problem(s))",
                    file.display(),
                    problems.len()
                );
            }
        }
    }
    Ok(if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
