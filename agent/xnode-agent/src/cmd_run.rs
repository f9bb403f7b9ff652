//! `xnode-agent run`: the daemon. It supervises the manifest's services,
//! serves the local API, reloads the manifest on SIGHUP or when the file
//! changes, and speaks sd-notify (READY, RELOADING, STATUS, WATCHDOG) to
//! systemd as a `Type=notify` service.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use sd_notify::NotifyState;
use supervisor::reconcile::{Observer, Reload, Supervisor};
use supervisor::status::Status;
use supervisor::systemd::Systemd;
use supervisor::Manifest;
use tokio::sync::mpsc;

use crate::api;

/// `--manifest PATH`, shared by the commands that read the manifest.
#[derive(Debug, clap::Args)]
pub struct ManifestArg {
    /// The service manifest (rendered by the NixOS modules).
    #[arg(
        long = "manifest",
        env = "XNODE_MANIFEST",
        default_value = "/etc/xnode/manifest.json"
    )]
    pub path: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    manifest: ManifestArg,
    /// The local API's Unix socket.
    #[arg(
        long,
        env = "XNODE_API_SOCKET",
        default_value = "/run/xnode/agent.sock"
    )]
    socket: PathBuf,
    /// Let this group (a name in /etc/group, or a number) use the socket:
    /// the API there only reads (status, inventory, attestation, metrics).
    #[arg(long)]
    socket_group: Option<String>,
    /// Also serve the API on TCP at this address; every request must then be signed by a key in --api-authorized-keys.
    #[arg(long, requires = "api_authorized_keys")]
    api_tcp: Option<std::net::SocketAddr>,
    /// Hex Ed25519 public keys, one per line, allowed to use the TCP API.
    #[arg(long)]
    api_authorized_keys: Option<PathBuf>,
    /// The node's state directory (its attestation.json is served at /v1/attestation).
    #[arg(long, env = "XNODE_STATE_DIR", default_value = "/var/lib/xnode")]
    state_dir: PathBuf,
    /// D-Bus address of the bus systemd is on (default: the system bus).
    #[arg(long, env = "XNODE_DBUS_ADDRESS")]
    bus: Option<String>,
    /// Prove the node's claim (an `xnode.challenges/v1` file) on its schedule
    /// and on request (POST /v1/challenge).
    #[arg(long, env = "XNODE_CHALLENGES")]
    challenges: Option<PathBuf>,
    /// The TPM the inventory endpoint asks: device:/dev/tpmrm0, swtpm:host=H,port=P, or none.
    #[arg(long, default_value = "device:/dev/tpmrm0", env = "XNODE_TCTI")]
    tcti: probe::TpmSource,
}

/// Read and check a manifest; every problem on one line.
pub fn load_manifest(path: &Path) -> Result<(Manifest, Vec<u8>), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let manifest = Manifest::parse(&bytes).map_err(|problems| {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        format!("{}: {}", path.display(), list.join("; "))
    })?;
    Ok((manifest, bytes))
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    // One thread is plenty for a loop that mostly waits, and keeps the
    // footprint small (one malloc arena, one stack); the probe behind
    // /v1/inventory runs on the blocking pool.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(daemon(args))
}

async fn daemon(args: RunArgs) -> anyhow::Result<ExitCode> {
    // A manifest that is wrong at start is an error: nothing is started.
    let (manifest, bytes) = load_manifest(&args.manifest.path).map_err(anyhow::Error::msg)?;
    let socket_group = args
        .socket_group
        .as_deref()
        .map(api::resolve_group)
        .transpose()
        .context("--socket-group")?;
    // A claim that cannot be used (a bad file, a GPU whose driver is not
    // there) stops the proofs, not the agent: it still supervises, and its
    // status says why it proves nothing.
    let (challenger, challenges_error) = match args.challenges.as_deref() {
        None => (None, None),
        Some(path) => match crate::challenger::Config::load(path) {
            Ok(config) => (
                Some(crate::challenger::Challenger::new(config, &args.state_dir)),
                None,
            ),
            Err(e) => {
                let why = format!("{e:#}");
                eprintln!("xnode-agent: --challenges: {why}; proving nothing until it is fixed and the agent restarted");
                (None, Some(why))
            }
        },
    };
    let sd = Systemd::connect(args.bus.as_deref()).await?;
    let (supervisor, status) =
        Supervisor::new(sd, manifest, args.manifest.path.display().to_string());

    let state = api::ApiState {
        status,
        state_dir: args.state_dir.clone(),
        tpm: args.tcti.clone(),
        started_at: crate::now_unix() as f64,
        challenger: challenger.clone(),
        challenges_error,
    };
    let app = api::router(state);
    api::serve_unix(&args.socket, app.clone(), socket_group).await?;
    eprintln!("xnode-agent: API on {}", args.socket.display());
    if let (Some(addr), Some(keys)) = (args.api_tcp, &args.api_authorized_keys) {
        let auth = crate::api_auth::Authorizer::from_file(keys)?;
        api::serve_tcp(addr, app, auth).await?;
        eprintln!("xnode-agent: signed-request API on {addr}");
    }

    if let Some(c) = challenger {
        tokio::spawn(c.schedule());
    }

    let (reload_tx, reload_rx) = mpsc::unbounded_channel();
    let _watcher = watch_manifest(&args.manifest.path, bytes, reload_tx.clone())?;

    let watchdog = sd_notify::watchdog_enabled();
    // Ping at least four times per watchdog period; without a watchdog a
    // slow tick still refreshes STATUS.
    let tick = watchdog.map_or(Duration::from_secs(5), |w| w / 4);
    let mut observer = SdNotify {
        watchdog,
        last_ping: Instant::now(),
        last_status: String::new(),
    };

    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        anyhow::Ok(())
    };
    tokio::select! {
        _ = supervisor.run(reload_rx, &mut observer, tick) => {}
        r = stop => {
            r?;
            // systemd owns the services: they keep running without the agent.
            let _ = sd_notify::notify(&[NotifyState::Stopping]);
            eprintln!("xnode-agent: stopping; the services keep running");
        }
    }
    drop(reload_tx);
    let _ = std::fs::remove_file(&args.socket);
    Ok(ExitCode::SUCCESS)
}

/// Reload on SIGHUP, and when the manifest file changes (inotify on its
/// directory, so a replace-by-rename is seen). A file whose bytes did not
/// change is not reloaded.
fn watch_manifest(
    path: &Path,
    initial: Vec<u8>,
    reloads: mpsc::UnboundedSender<Reload>,
) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let (poke_tx, mut poke_rx) = mpsc::unbounded_channel::<&'static str>();
    let name = path.file_name().map(|n| n.to_os_string());
    let file_poke = poke_tx.clone();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev {
            if ev.paths.iter().any(|p| p.file_name() == name.as_deref()) {
                let _ = file_poke.send("the file changed");
            }
        }
    })
    .context("watching the manifest")?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .with_context(|| format!("watching {}", dir.display()))?;

    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            if poke_tx.send("SIGHUP").is_err() {
                return;
            }
        }
    });

    let path = path.to_path_buf();
    tokio::spawn(async move {
        let mut last = initial;
        while let Some(why) = poke_rx.recv().await {
            // An editor's save is several events: let them settle.
            tokio::time::sleep(Duration::from_millis(100)).await;
            while poke_rx.try_recv().is_ok() {}
            let reload = match std::fs::read(&path) {
                Ok(bytes) if bytes == last => continue,
                Ok(bytes) => {
                    eprintln!("xnode-agent: {why}: reading {}", path.display());
                    let parsed = load_manifest(&path).map(|(m, _)| m);
                    last = bytes;
                    parsed
                }
                // Mid-replace, or removed: keep what runs, say why.
                Err(e) => Err(format!("reading {}: {e}", path.display())),
            };
            if reloads.send(reload).is_err() {
                return;
            }
        }
    });
    Ok(watcher)
}

/// sd-notify: a no-op when not started by systemd (no NOTIFY_SOCKET).
#[derive(Debug)]
struct SdNotify {
    watchdog: Option<Duration>,
    last_ping: Instant,
    last_status: String,
}

impl Observer for SdNotify {
    fn ready(&mut self, status: &Status) {
        let line = status.summary();
        let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(&line)]);
        eprintln!("xnode-agent: ready: {line}");
        self.last_status = line;
    }

    fn reloading(&mut self) {
        let mut states = vec![NotifyState::Reloading];
        if let Ok(now) = NotifyState::monotonic_usec_now() {
            states.push(now);
        }
        let _ = sd_notify::notify(&states);
    }

    fn alive(&mut self) {
        if let Some(w) = self.watchdog {
            if self.last_ping.elapsed() >= w / 4 {
                let _ = sd_notify::notify(&[NotifyState::Watchdog]);
                self.last_ping = Instant::now();
            }
        }
    }

    fn status_line(&mut self, line: &str) {
        if line != self.last_status {
            let _ = sd_notify::notify(&[NotifyState::Status(line)]);
            self.last_status = line.to_string();
        }
    }
}
