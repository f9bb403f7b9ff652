//! systemd over D-Bus (org.freedesktop.systemd1): start, stop and restart
//! units, waiting for their jobs through JobRemoved signals, and read their
//! state (ActiveState, SubState, NRestarts, ExecMainStatus, MainPID).
//! systemd owns the processes; the agent decides and observes.

use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;
use zbus::zvariant::OwnedObjectPath;

/// How long any one D-Bus exchange may take before it is an error.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a start, stop or restart job may take: systemd's own default
/// TimeoutStartSec, so a slow service fails by its own rule first.
pub const JOB_TIMEOUT: Duration = Duration::from_secs(90);

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Manager {
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn subscribe(&self) -> zbus::Result<()>;
    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: zbus::zvariant::ObjectPath<'_>,
        unit: &str,
        result: &str,
    ) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1"
)]
trait Unit {
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn sub_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn load_state(&self) -> zbus::Result<String>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Service",
    default_service = "org.freedesktop.systemd1"
)]
trait Service {
    #[zbus(property, name = "NRestarts")]
    fn n_restarts(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn exec_main_status(&self) -> zbus::Result<i32>;
    #[zbus(property, name = "MainPID")]
    fn main_pid(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn restart(&self) -> zbus::Result<String>;
    #[zbus(property, name = "RestartUSec")]
    fn restart_usec(&self) -> zbus::Result<u64>;
}

#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error("cannot reach systemd over D-Bus ({bus}): {why}. Is this a systemd host, and may this user talk to it?")]
    Unavailable { bus: String, why: String },
    #[error("unit {0} does not exist (systemd has no unit file for it)")]
    UnknownUnit(String),
    #[error("{action} {unit}: the job ended '{result}' (see `journalctl -u {unit}`)")]
    Job {
        action: &'static str,
        unit: String,
        result: String,
    },
    #[error("{what} took longer than {secs} s: systemd did not answer")]
    Timeout { what: String, secs: u64 },
    #[error("D-Bus: {0}")]
    DBus(String),
}

/// A unit's state as systemd reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitState {
    pub unit: String,
    /// active, inactive, failed, activating, deactivating, reloading.
    pub active_state: String,
    pub sub_state: String,
    /// Restarts systemd itself made (Restart=).
    pub n_restarts: u32,
    /// Exit status of the main process's last run.
    pub exec_main_status: i32,
    pub main_pid: u32,
    /// The unit's Restart= ("no", "always", "on-failure", ...).
    pub restart: String,
    /// Its RestartSec=, in microseconds.
    pub restart_usec: u64,
}

/// A connection to systemd's manager.
#[derive(Debug, Clone)]
pub struct Systemd {
    conn: zbus::Connection,
    bus: String,
}

async fn within<T>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, SystemdError>>,
) -> Result<T, SystemdError> {
    within_for(CALL_TIMEOUT, what, fut).await
}

async fn within_for<T>(
    limit: Duration,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, SystemdError>>,
) -> Result<T, SystemdError> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| SystemdError::Timeout {
            what: what.to_string(),
            secs: limit.as_secs(),
        })?
}

/// A unit's ActiveState/SubState as a PropertiesChanged signal carried it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitChange {
    pub active_state: String,
    pub sub_state: String,
    /// When the agent received the signal.
    pub at: std::time::SystemTime,
}

fn dbus(e: zbus::Error) -> SystemdError {
    SystemdError::DBus(e.to_string())
}

impl Systemd {
    /// Connect to the system bus (`DBUS_SYSTEM_BUS_ADDRESS`, else the
    /// standard socket), or to `address` when given.
    pub async fn connect(address: Option<&str>) -> Result<Systemd, SystemdError> {
        let bus = address
            .map(str::to_string)
            .unwrap_or_else(|| "the system bus".into());
        let unavailable = |e: zbus::Error| SystemdError::Unavailable {
            bus: bus.clone(),
            why: e.to_string(),
        };
        let conn = within("connecting to D-Bus", async {
            match address {
                Some(a) => zbus::connection::Builder::address(a)
                    .map_err(unavailable)?
                    .build()
                    .await
                    .map_err(unavailable),
                None => zbus::Connection::system().await.map_err(unavailable),
            }
        })
        .await?;
        let sd = Systemd { conn, bus };
        // Fail now, clearly, when systemd is not on this bus.
        let manager = sd.manager().await?;
        within("subscribing to systemd", async {
            manager.subscribe().await.map_err(|e| match e {
                // Nobody owns the name, or the bus failed to activate it.
                zbus::Error::MethodError(name, detail, _)
                    if name.as_str() == "org.freedesktop.DBus.Error.ServiceUnknown"
                        || name.as_str() == "org.freedesktop.DBus.Error.NameHasNoOwner"
                        || name
                            .as_str()
                            .starts_with("org.freedesktop.DBus.Error.Spawn") =>
                {
                    let detail = detail.map(|d| format!(" ({d})")).unwrap_or_default();
                    SystemdError::Unavailable {
                        bus: sd.bus.clone(),
                        why: format!("org.freedesktop.systemd1 is not on this bus{detail}"),
                    }
                }
                other => dbus(other),
            })
        })
        .await?;
        Ok(sd)
    }

    async fn manager(&self) -> Result<ManagerProxy<'static>, SystemdError> {
        ManagerProxy::new(&self.conn).await.map_err(dbus)
    }

    /// The unit's object path and proxy; an error when systemd knows no such unit.
    async fn unit(
        &self,
        unit: &str,
    ) -> Result<(OwnedObjectPath, UnitProxy<'static>), SystemdError> {
        let path = self.manager().await?.load_unit(unit).await.map_err(dbus)?;
        let u = UnitProxy::builder(&self.conn)
            .path(path.clone())
            .map_err(dbus)?
            .build()
            .await
            .map_err(dbus)?;
        if u.load_state().await.map_err(dbus)? == "not-found" {
            return Err(SystemdError::UnknownUnit(unit.to_string()));
        }
        Ok((path, u))
    }

    pub async fn state(&self, unit: &str) -> Result<UnitState, SystemdError> {
        within(&format!("reading {unit}"), async {
            let (path, u) = self.unit(unit).await?;
            let s = ServiceProxy::builder(&self.conn)
                .path(path)
                .map_err(dbus)?
                .build()
                .await
                .map_err(dbus)?;
            Ok(UnitState {
                unit: unit.to_string(),
                active_state: u.active_state().await.map_err(dbus)?,
                sub_state: u.sub_state().await.map_err(dbus)?,
                n_restarts: s.n_restarts().await.unwrap_or(0),
                exec_main_status: s.exec_main_status().await.unwrap_or(0),
                main_pid: s.main_pid().await.unwrap_or(0),
                restart: s.restart().await.unwrap_or_else(|_| "no".into()),
                restart_usec: s.restart_usec().await.unwrap_or(0),
            })
        })
        .await
    }

    pub async fn start(&self, unit: &str) -> Result<(), SystemdError> {
        self.job("start", unit).await
    }

    pub async fn stop(&self, unit: &str) -> Result<(), SystemdError> {
        self.job("stop", unit).await
    }

    pub async fn restart(&self, unit: &str) -> Result<(), SystemdError> {
        self.job("restart", unit).await
    }

    /// The unit's state changes, from systemd's PropertiesChanged signals
    /// (no polling). Subscribe before reading the current state, so that
    /// no change falls between the two.
    pub async fn watch(
        &self,
        unit: &str,
    ) -> Result<impl futures_util::Stream<Item = UnitChange> + Send + 'static, SystemdError> {
        within(&format!("watching {unit}"), async {
            let (path, _) = self.unit(unit).await?;
            let props = zbus::fdo::PropertiesProxy::builder(&self.conn)
                .destination("org.freedesktop.systemd1")
                .map_err(dbus)?
                .path(path)
                .map_err(dbus)?
                .build()
                .await
                .map_err(dbus)?;
            let stream = props.receive_properties_changed().await.map_err(dbus)?;
            Ok(stream.filter_map(|signal| async move {
                let at = std::time::SystemTime::now();
                let args = signal.args().ok()?;
                if args.interface_name().as_str() != "org.freedesktop.systemd1.Unit" {
                    return None;
                }
                let text = |key: &str| -> Option<String> {
                    let v = args.changed_properties().get(key)?;
                    String::try_from(v.try_clone().ok()?).ok()
                };
                Some(UnitChange {
                    active_state: text("ActiveState")?,
                    sub_state: text("SubState").unwrap_or_default(),
                    at,
                })
            }))
        })
        .await
    }

    /// Queue a job and wait for its JobRemoved signal.
    async fn job(&self, action: &'static str, unit: &str) -> Result<(), SystemdError> {
        within_for(JOB_TIMEOUT, &format!("{action} {unit}"), async {
            self.unit(unit).await?;
            let manager = self.manager().await?;
            // Listen before queueing, so the signal cannot be missed.
            let mut removed = manager.receive_job_removed().await.map_err(dbus)?;
            let job = match action {
                "start" => manager.start_unit(unit, "replace").await,
                "stop" => manager.stop_unit(unit, "replace").await,
                _ => manager.restart_unit(unit, "replace").await,
            }
            .map_err(dbus)?;
            while let Some(signal) = removed.next().await {
                let args = signal.args().map_err(dbus)?;
                if args.job().as_str() == job.as_str() {
                    return match args.result() {
                        &"done" => Ok(()),
                        other => Err(SystemdError::Job {
                            action,
                            unit: unit.to_string(),
                            result: other.to_string(),
                        }),
                    };
                }
            }
            Err(SystemdError::DBus("the signal stream ended".into()))
        })
        .await
    }
}
