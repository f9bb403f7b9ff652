//! `xnode-agent unit`: systemd units over D-Bus, as the supervisor drives them.

use std::process::ExitCode;

use supervisor::systemd::Systemd;

#[derive(Debug, clap::Args)]
pub struct UnitArgs {
    #[command(subcommand)]
    action: UnitAction,
    /// D-Bus address of the bus systemd is on (default: the system bus).
    #[arg(long, global = true, env = "XNODE_DBUS_ADDRESS")]
    bus: Option<String>,
    /// Print JSON.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, clap::Subcommand)]
enum UnitAction {
    /// ActiveState, SubState, NRestarts, ExecMainStatus and MainPID of a unit.
    Status { unit: String },
    /// Start a unit and wait for its job.
    Start { unit: String },
    /// Stop a unit and wait for its job.
    Stop { unit: String },
    /// Restart a unit and wait for its job.
    Restart { unit: String },
}

pub fn run(args: UnitArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let sd = Systemd::connect(args.bus.as_deref()).await?;
        let unit = match &args.action {
            UnitAction::Status { unit } => unit,
            UnitAction::Start { unit } => {
                sd.start(unit).await?;
                unit
            }
            UnitAction::Stop { unit } => {
                sd.stop(unit).await?;
                unit
            }
            UnitAction::Restart { unit } => {
                sd.restart(unit).await?;
                unit
            }
        };
        let st = sd.state(unit).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&st)?);
        } else {
            println!(
                "{}: {} ({}), main pid {}, restarts {}, last exit status {}",
                st.unit,
                st.active_state,
                st.sub_state,
                st.main_pid,
                st.n_restarts,
                st.exec_main_status
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}
