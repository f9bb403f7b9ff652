//! The reconcile loop: brings the units a manifest declares to running and
//! healthy, in dependency order, and keeps them there.
//!
//! One task owns all state and handles events one at a time: unit state
//! changes (systemd's PropertiesChanged signals, one watcher per unit),
//! health results (one checker task per service), restart timers, finished
//! jobs and new manifests. Decisions come from each service's
//! [`Tracker`]; systemd runs every start and restart. What the loop knows
//! is published as a [`Status`] after every event.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::health::{Observation, Schedule};
use crate::manifest::{Manifest, Service};
use crate::policy::{Action, Phase, Tracker};
use crate::status::{Recovery, ServiceStatus, Status};
use crate::systemd::{Systemd, SystemdError, UnitChange};

/// What reaches the loop. `generation` tells events of a service's
/// current tasks from those of tasks a reload replaced.
#[derive(Debug)]
enum Event {
    Unit {
        name: String,
        generation: u64,
        change: UnitChange,
    },
    Health {
        name: String,
        generation: u64,
        observation: Observation,
    },
    RestartDue {
        name: String,
        generation: u64,
    },
    /// Time for systemd's own Restart= to have acted is up.
    DownCheck {
        name: String,
        generation: u64,
    },
    /// The unit's state read from systemd after a DownCheck (or why it
    /// could not be read).
    DownConfirmed {
        name: String,
        generation: u64,
        active_state: Result<String, String>,
    },
    JobDone {
        name: String,
        generation: u64,
        what: &'static str,
        /// ActiveState after the job, or why the job failed.
        result: Result<String, String>,
    },
}

/// A manifest to apply, or why the new one was rejected.
pub type Reload = Result<Manifest, String>;

/// Hooks into the agent's surroundings (sd-notify, the log).
pub trait Observer: Send {
    /// The first pass is done (every service whose dependencies allow it
    /// has been started), or a reload has been dealt with.
    fn ready(&mut self, status: &Status);
    /// A new manifest is being considered.
    fn reloading(&mut self);
    /// Called on every loop turn and at least every `tick`: proof of life
    /// for a watchdog.
    fn alive(&mut self);
    /// A one-line status for the service manager.
    fn status_line(&mut self, line: &str);
}

#[derive(Debug)]
struct Supervised {
    service: Service,
    tracker: Tracker,
    generation: u64,
    active_state: String,
    sub_state: String,
    /// Started (or adopted running) by this agent.
    started: bool,
    job_in_flight: bool,
    /// A restart waits for its backoff.
    restart_scheduled: bool,
    /// The job in flight is the first start.
    starting: bool,
    has_check: bool,
    health: Option<Observation>,
    /// When the agent saw the unit leave the active state.
    down: Option<SystemTime>,
    /// The agent queued a job since then (so it, not systemd, brought it back).
    agent_acted: bool,
    /// The unit's own Restart= and RestartSec=, when it has one: systemd
    /// passes a unit through "failed" on its way to restarting it, so the
    /// agent gives systemd this long (and a margin) before acting.
    systemd_restart: Option<Duration>,
    down_check_scheduled: bool,
    last_recovery: Option<Recovery>,
    systemd_recoveries: u64,
    gave_up_reason: Option<String>,
    error: Option<String>,
    tasks: Vec<JoinHandle<()>>,
}

impl Supervised {
    fn is_active(&self) -> bool {
        self.active_state == "active" || self.active_state == "reloading"
    }

    /// Up enough for dependents to start: active, and healthy once checked.
    fn is_up(&self) -> bool {
        self.is_active() && (!self.has_check || self.health.as_ref().is_some_and(|h| h.healthy))
    }

    /// A restart is scheduled or a job is in flight: the agent has acted.
    fn pending(&self) -> bool {
        self.job_in_flight || self.restart_scheduled
    }

    fn abort_tasks(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.abort_tasks();
    }
}

#[derive(Debug)]
pub struct Supervisor {
    sd: Systemd,
    manifest: Manifest,
    manifest_source: String,
    services: BTreeMap<String, Supervised>,
    events_tx: mpsc::UnboundedSender<Event>,
    events_rx: mpsc::UnboundedReceiver<Event>,
    status_tx: watch::Sender<Arc<Status>>,
    next_generation: u64,
    manifest_error: Option<String>,
    loaded_at: SystemTime,
}

/// Deliver `event` to the loop after `after` (a timer the service's
/// tasks own, so a reload cancels it).
fn send_later(tx: &mpsc::UnboundedSender<Event>, after: Duration, event: Event) -> JoinHandle<()> {
    let tx = tx.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        let _ = tx.send(event);
    })
}

/// How long after a unit's RestartSec= the agent waits for systemd's own
/// restart before starting the unit itself.
const SYSTEMD_RESTART_MARGIN: Duration = Duration::from_secs(2);

/// States a unit rests in when nothing is starting it.
fn is_final(active_state: &str) -> bool {
    active_state == "failed" || active_state == "inactive"
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Supervisor {
    /// A supervisor for `manifest` (read from `source`, for the status).
    /// The returned receiver always holds the latest [`Status`].
    pub fn new(
        sd: Systemd,
        manifest: Manifest,
        source: impl Into<String>,
    ) -> (Supervisor, watch::Receiver<Arc<Status>>) {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (status_tx, status_rx) = watch::channel(Arc::new(Status::default()));
        let sup = Supervisor {
            sd,
            manifest,
            manifest_source: source.into(),
            services: BTreeMap::new(),
            events_tx,
            events_rx,
            status_tx,
            next_generation: 1,
            manifest_error: None,
            loaded_at: SystemTime::now(),
        };
        (sup, status_rx)
    }

    /// Run until `reloads` closes. `tick` bounds the time between
    /// `Observer::alive` calls (half the watchdog interval, say).
    pub async fn run(
        mut self,
        mut reloads: mpsc::UnboundedReceiver<Reload>,
        observer: &mut dyn Observer,
        tick: Duration,
    ) {
        let services = self.manifest.services.clone();
        for s in services {
            self.add(s).await;
        }
        self.advance();
        self.publish();
        observer.ready(&self.status_tx.borrow());
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some(event) = self.events_rx.recv() => self.handle(event),
                reload = reloads.recv() => {
                    let Some(reload) = reload else { break };
                    observer.reloading();
                    match reload {
                        Ok(m) => self.apply(m).await,
                        Err(why) => {
                            eprintln!("xnode-agent: new manifest rejected, the running services are untouched: {why}");
                            self.manifest_error = Some(why);
                        }
                    }
                    self.advance();
                    self.publish();
                    observer.ready(&self.status_tx.borrow());
                }
                _ = ticker.tick() => {}
            }
            self.advance();
            self.publish();
            observer.alive();
            observer.status_line(&self.status_tx.borrow().summary());
        }
    }

    /// Begin supervising a service: watch its unit, read its state, start
    /// its health checks. Nothing is started here (see `advance`).
    async fn add(&mut self, service: Service) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let name = service.name.clone();
        let mut sup = Supervised {
            tracker: Tracker::new(service.restart.clone()),
            generation,
            active_state: "unknown".into(),
            sub_state: String::new(),
            started: false,
            job_in_flight: false,
            restart_scheduled: false,
            starting: false,
            has_check: false,
            health: None,
            down: None,
            agent_acted: false,
            systemd_restart: None,
            down_check_scheduled: false,
            last_recovery: None,
            systemd_recoveries: 0,
            gave_up_reason: None,
            error: None,
            tasks: Vec::new(),
            service,
        };
        // Watch first, then read: a change in between is not lost.
        match self.sd.watch(&sup.service.unit).await {
            Ok(changes) => {
                let tx = self.events_tx.clone();
                let n = name.clone();
                sup.tasks.push(tokio::spawn(async move {
                    let mut changes = std::pin::pin!(changes);
                    while let Some(change) = changes.next().await {
                        let event = Event::Unit {
                            name: n.clone(),
                            generation,
                            change,
                        };
                        if tx.send(event).is_err() {
                            return;
                        }
                    }
                }));
                match self.sd.state(&sup.service.unit).await {
                    Ok(st) => {
                        sup.active_state = st.active_state;
                        sup.sub_state = st.sub_state;
                        if st.restart != "no" {
                            sup.systemd_restart = Some(Duration::from_micros(st.restart_usec));
                        }
                    }
                    Err(e) => sup.error = Some(e.to_string()),
                }
            }
            Err(e) => {
                eprintln!("xnode-agent: {name}: {e}");
                sup.active_state = match e {
                    SystemdError::UnknownUnit(_) => "not-found".into(),
                    _ => "unknown".into(),
                };
                sup.error = Some(e.to_string());
            }
        }
        match Schedule::for_service(&sup.service) {
            Ok(Some(schedule)) => {
                sup.has_check = true;
                sup.tasks
                    .push(self.spawn_checks(name.clone(), generation, schedule));
            }
            Ok(None) => {}
            Err(e) => sup.error = Some(e),
        }
        if sup.is_active() {
            // Already running: adopt it rather than restart it.
            sup.started = true;
        }
        self.services.insert(name, sup);
    }

    fn spawn_checks(
        &self,
        name: String,
        generation: u64,
        mut schedule: Schedule,
    ) -> JoinHandle<()> {
        let tx = self.events_tx.clone();
        tokio::spawn(async move {
            let mut next = tokio::time::Instant::now();
            loop {
                next += schedule.interval;
                let observation = schedule.run().await;
                let event = Event::Health {
                    name: name.clone(),
                    generation,
                    observation,
                };
                if tx.send(event).is_err() {
                    return;
                }
                // Keep the cadence even when a check is slow, but never run
                // two at once.
                tokio::time::sleep_until(next.max(tokio::time::Instant::now())).await;
            }
        })
    }

    /// Start what is declared, not running, and whose dependencies are up.
    fn advance(&mut self) {
        let order: Vec<String> = match self.manifest.start_order() {
            Ok(o) => o.iter().map(|s| s.name.clone()).collect(),
            Err(_) => return,
        };
        for name in order {
            let ready = match self.services.get(&name) {
                Some(s) if !s.started && !s.job_in_flight && s.active_state != "not-found" => s
                    .service
                    .depends_on
                    .iter()
                    .all(|d| self.services.get(d).is_some_and(Supervised::is_up)),
                _ => false,
            };
            if ready {
                if let Some(s) = self.services.get_mut(&name) {
                    s.started = true;
                    if !s.is_active() {
                        s.starting = true;
                        eprintln!("xnode-agent: starting {} ({})", name, s.service.unit);
                        self.job(&name, "start");
                    }
                }
            }
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Unit {
                name,
                generation,
                change,
            } => self.on_unit(&name, generation, change),
            Event::Health {
                name,
                generation,
                observation,
            } => {
                let Some(s) = self.current(&name, generation) else {
                    return;
                };
                let was = s.health.as_ref().map(|h| h.healthy);
                if was != Some(observation.healthy) {
                    eprintln!(
                        "xnode-agent: {name}: {} ({})",
                        if observation.healthy {
                            "healthy"
                        } else {
                            "unhealthy"
                        },
                        observation.detail
                    );
                }
                let active = s.is_active() && !s.pending();
                let healthy = observation.healthy;
                let detail = observation.detail.clone();
                s.health = Some(observation);
                if !active {
                    // A down unit is the unit watcher's business.
                    return;
                }
                if healthy && s.tracker.phase() == Phase::GaveUp {
                    eprintln!("xnode-agent: {name}: healthy again, supervising it again");
                    s.gave_up_reason = None;
                }
                let action = s.tracker.on_health(healthy, &detail);
                self.act(&name, action);
            }
            Event::DownCheck { name, generation } => {
                let sd = self.sd.clone();
                let tx = self.events_tx.clone();
                let Some(s) = self.current(&name, generation) else {
                    return;
                };
                s.down_check_scheduled = false;
                if is_final(&s.active_state) && s.started && !s.pending() {
                    // The state seen so far comes from signals, which lag on
                    // a busy machine: ask systemd before acting, so a restart
                    // it did is neither repeated nor credited to the agent.
                    let unit = s.service.unit.clone();
                    s.tasks.push(tokio::spawn(async move {
                        let active_state = sd
                            .state(&unit)
                            .await
                            .map(|st| st.active_state)
                            .map_err(|e| e.to_string());
                        let _ = tx.send(Event::DownConfirmed {
                            name,
                            generation,
                            active_state,
                        });
                    }));
                }
            }
            Event::DownConfirmed {
                name,
                generation,
                active_state,
            } => {
                let Some(s) = self.current(&name, generation) else {
                    return;
                };
                // Not down after all: the signals on their way will say so.
                // Unreadable: act on what the signals said.
                if active_state.as_deref().is_ok_and(|st| !is_final(st)) {
                    return;
                }
                if is_final(&s.active_state) && s.started && !s.pending() {
                    let action = s.tracker.on_down(&format!(
                        "the unit is {} ({}) and its own Restart= did not bring it back",
                        s.active_state, s.sub_state
                    ));
                    self.act(&name, action);
                }
            }
            Event::RestartDue { name, generation } => {
                let Some(s) = self.current(&name, generation) else {
                    return;
                };
                s.restart_scheduled = false;
                let what = if s.is_active() { "restart" } else { "start" };
                self.job(&name, what);
            }
            Event::JobDone {
                name,
                generation,
                what,
                result,
            } => {
                let Some(s) = self.current(&name, generation) else {
                    return;
                };
                s.job_in_flight = false;
                s.starting = false;
                s.tracker.on_restart_done();
                // The unit's state read after the job, not the signals
                // (which may still be on their way): a failed job, or a
                // unit already down again, counts as the unit going down.
                let down = match result {
                    Ok(state) if is_final(&state) => {
                        Some(format!("the unit is {state} after {what}"))
                    }
                    Ok(_) => {
                        s.error = None;
                        None
                    }
                    Err(e) => {
                        eprintln!("xnode-agent: {name}: {what} failed: {e}");
                        s.error = Some(e.clone());
                        Some(format!("{what} failed"))
                    }
                };
                if let Some(reason) = down {
                    let action = s.tracker.on_down(&reason);
                    self.act(&name, action);
                }
            }
        }
    }

    fn current(&mut self, name: &str, generation: u64) -> Option<&mut Supervised> {
        self.services
            .get_mut(name)
            .filter(|s| s.generation == generation)
    }

    fn on_unit(&mut self, name: &str, generation: u64, change: UnitChange) {
        let tx = self.events_tx.clone();
        let Some(s) = self.current(name, generation) else {
            return;
        };
        let was_active = s.is_active();
        s.active_state = change.active_state.clone();
        s.sub_state = change.sub_state.clone();
        let now_active = s.is_active();
        if was_active && !now_active && s.down.is_none() {
            s.down = Some(change.at);
            s.agent_acted = s.job_in_flight;
            eprintln!(
                "xnode-agent: {name}: {} ({})",
                change.active_state, change.sub_state
            );
        }
        if now_active {
            if let Some(down_at) = s.down.take() {
                let by = if s.agent_acted { "agent" } else { "systemd" };
                let r = Recovery {
                    by,
                    detected_at: unix(down_at),
                    active_at: unix(change.at),
                    seconds: change
                        .at
                        .duration_since(down_at)
                        .unwrap_or_default()
                        .as_secs_f64(),
                };
                eprintln!(
                    "xnode-agent: {name}: active again after {:.1} ms (restarted by {by})",
                    r.seconds * 1000.0
                );
                if by == "systemd" {
                    s.systemd_recoveries += 1;
                }
                s.last_recovery = Some(r);
            }
            s.agent_acted = false;
        } else if is_final(&change.active_state) && s.started && !s.pending() {
            // Down, and not in a transition (deactivating, activating
            // auto-restart) that is systemd's business.
            if s.down.is_none() {
                s.down = Some(change.at);
            }
            match s.systemd_restart {
                // systemd restarts it itself: act only if it has not
                // after its RestartSec (its start limit may have hit).
                Some(wait) if !s.down_check_scheduled => {
                    s.down_check_scheduled = true;
                    let event = Event::DownCheck {
                        name: name.to_string(),
                        generation: s.generation,
                    };
                    s.tasks
                        .push(send_later(&tx, wait + SYSTEMD_RESTART_MARGIN, event));
                }
                Some(_) => {}
                None => {
                    let action = s.tracker.on_down(&format!(
                        "the unit is {} ({})",
                        change.active_state, change.sub_state
                    ));
                    self.act(name, action);
                }
            }
        }
    }

    fn act(&mut self, name: &str, action: Action) {
        let Some(s) = self.services.get_mut(name) else {
            return;
        };
        match action {
            Action::Nothing => {}
            Action::GiveUp { reason } => {
                eprintln!(
                    "xnode-agent: GAVE UP on {name} ({}): {reason}. It is left as it is; fix it and it is supervised again once healthy, or send a new manifest.",
                    s.service.unit
                );
                s.gave_up_reason = Some(reason);
            }
            Action::Restart { after, reason } => {
                eprintln!(
                    "xnode-agent: {name}: {reason}; restarting {}",
                    if after.is_zero() {
                        "now".to_string()
                    } else {
                        format!("in {:.1} s", after.as_secs_f64())
                    }
                );
                if after.is_zero() {
                    let what = if s.is_active() { "restart" } else { "start" };
                    self.job(name, what);
                } else {
                    s.restart_scheduled = true;
                    let event = Event::RestartDue {
                        name: name.to_string(),
                        generation: s.generation,
                    };
                    s.tasks.push(send_later(&self.events_tx, after, event));
                }
            }
        }
    }

    /// Ask systemd to start or restart the unit; the result (the unit's
    /// ActiveState after the job) comes back as an event, so the loop never
    /// waits on a job.
    fn job(&mut self, name: &str, what: &'static str) {
        let Some(s) = self.services.get_mut(name) else {
            return;
        };
        s.job_in_flight = true;
        s.agent_acted = true;
        let sd = self.sd.clone();
        let unit = s.service.unit.clone();
        let tx = self.events_tx.clone();
        let generation = s.generation;
        let name = name.to_string();
        tokio::spawn(async move {
            let done = match what {
                "start" => sd.start(&unit).await,
                _ => sd.restart(&unit).await,
            };
            let result = match done {
                Ok(()) => sd
                    .state(&unit)
                    .await
                    .map(|st| st.active_state)
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let _ = tx.send(Event::JobDone {
                name,
                generation,
                what,
                result,
            });
        });
    }

    /// Apply a new (valid) manifest: stop what it no longer declares,
    /// supervise what it adds, re-read what changed. Unchanged services
    /// are not touched.
    async fn apply(&mut self, manifest: Manifest) {
        let old: BTreeMap<String, Service> = self
            .manifest
            .services
            .iter()
            .map(|s| (s.name.clone(), s.clone()))
            .collect();
        let new: BTreeMap<String, Service> = manifest
            .services
            .iter()
            .map(|s| (s.name.clone(), s.clone()))
            .collect();
        for (name, s) in &old {
            match new.get(name) {
                Some(n) if n == s => {}
                Some(n) if n.unit == s.unit => {
                    // Same unit, new policy or check: keep its state and counters.
                    if let Some(mut sup) = self.services.remove(name) {
                        let tracker = sup.tracker.clone();
                        let started = sup.started;
                        sup.abort_tasks();
                        drop(sup);
                        self.add(n.clone()).await;
                        if let Some(sup) = self.services.get_mut(name) {
                            sup.tracker = tracker;
                            sup.tracker.set_policy(n.restart.clone());
                            sup.started |= started;
                        }
                    }
                    eprintln!("xnode-agent: {name}: updated");
                }
                _ => {
                    if let Some(mut sup) = self.services.remove(name) {
                        sup.abort_tasks();
                        eprintln!(
                            "xnode-agent: {name}: no longer declared, stopping {}",
                            sup.service.unit
                        );
                        let sd = self.sd.clone();
                        let unit = sup.service.unit.clone();
                        tokio::spawn(async move {
                            if let Err(e) = sd.stop(&unit).await {
                                eprintln!("xnode-agent: stopping {unit}: {e}");
                            }
                        });
                    }
                }
            }
        }
        for (name, s) in &new {
            if !self.services.contains_key(name) {
                eprintln!("xnode-agent: {name}: newly declared ({})", s.unit);
                self.add(s.clone()).await;
            }
        }
        self.manifest = manifest;
        self.manifest_error = None;
        self.loaded_at = SystemTime::now();
    }

    fn publish(&self) {
        let order: Vec<&str> = match self.manifest.start_order() {
            Ok(o) => o.iter().map(|s| s.name.as_str()).collect(),
            Err(_) => self.services.keys().map(String::as_str).collect(),
        };
        let services = order
            .iter()
            .filter_map(|n| self.services.get(*n))
            .map(|s| ServiceStatus {
                name: s.service.name.clone(),
                unit: s.service.unit.clone(),
                kind: s.service.kind,
                active_state: s.active_state.clone(),
                sub_state: s.sub_state.clone(),
                phase: if s.tracker.phase() == Phase::GaveUp {
                    "gave-up".into()
                } else if !s.started {
                    "waiting-for-dependencies".into()
                } else if s.starting {
                    "starting".into()
                } else if s.job_in_flight || s.tracker.phase() == Phase::Restarting {
                    "restarting".into()
                } else {
                    "supervised".into()
                },
                healthy: if s.has_check {
                    s.health.as_ref().map(|h| h.healthy && s.is_active())
                } else {
                    Some(s.is_active())
                },
                health: s.health.clone(),
                consecutive_failures: s.tracker.consecutive_failures(),
                agent_restarts: s.tracker.restarts_total(),
                systemd_recoveries: s.systemd_recoveries,
                last_recovery: s.last_recovery.clone(),
                gave_up: s.gave_up_reason.clone(),
                error: s.error.clone(),
            })
            .collect();
        let status = Status {
            manifest: self.manifest_source.clone(),
            manifest_loaded_at: unix(self.loaded_at),
            manifest_rejected: self.manifest_error.clone(),
            services,
        };
        self.status_tx.send_replace(Arc::new(status));
    }
}
