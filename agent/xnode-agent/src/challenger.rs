//! Continuous proof of resource in the daemon: challenges on a schedule
//! (spread over the period, and niced so the node's own work comes first)
//! and on a verifier's request; the latest result in the status and on
//! disk; progress as events in the API.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use por::Seed;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch, Notify};

use crate::prove::{self, Claim, ClaimSpec, Progress};

pub const SCHEMA: &str = "xnode.challenges/v1";
/// The latest report that checked out (`xnode.challenge/v1`), served at
/// `/v1/challenge`.
pub const REPORT_FILE: &str = "challenge.json";
/// What the latest run did, failed or not: read back at start.
pub const LAST_FILE: &str = "challenge-last.json";
/// Events kept for clients that poll.
const EVENTS_KEPT: usize = 512;
/// A running phase's progress goes out at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The daemon's challenges file, as the NixOS module renders it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    schema: String,
    /// Seconds between scheduled runs; absent: only on request.
    #[serde(default)]
    every_seconds: Option<u64>,
    /// Least seconds from the end of one run to a requested one.
    #[serde(default = "default_min_gap")]
    min_request_gap_seconds: u64,
    /// Niceness of scheduled runs (0 to 19).
    #[serde(default = "default_nice")]
    nice: i32,
    claim: ClaimSpec,
}

fn default_min_gap() -> u64 {
    600
}

fn default_nice() -> i32 {
    10
}

/// A checked challenges file.
#[derive(Debug, Clone)]
pub struct Config {
    pub every: Option<Duration>,
    pub min_request_gap: Duration,
    pub nice: i32,
    pub claim: Claim,
}

impl Config {
    /// Parse and check a challenges file; every problem on one line.
    pub fn parse(bytes: &[u8]) -> anyhow::Result<Config> {
        let f: ConfigFile = serde_json::from_slice(bytes)?;
        let mut problems = Vec::new();
        if f.schema != SCHEMA {
            problems.push(format!("schema: '{}' is not {SCHEMA}", f.schema));
        }
        if f.every_seconds.is_some_and(|s| s < 60) {
            problems.push("every_seconds: at least 60".to_string());
        }
        if !(0..=19).contains(&f.nice) {
            problems.push(format!("nice: {} is not 0 to 19", f.nice));
        }
        let claim = f
            .claim
            .claim()
            .map_err(|e| problems.push(format!("claim: {e:#}")))
            .ok();
        match claim {
            Some(claim) if problems.is_empty() => Ok(Config {
                every: f.every_seconds.map(Duration::from_secs),
                min_request_gap: Duration::from_secs(f.min_request_gap_seconds),
                nice: f.nice,
                claim,
            }),
            _ => anyhow::bail!("{}", problems.join("; ")),
        }
    }

    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Config::parse(&bytes).with_context(|| path.display().to_string())
    }
}

/// Who asked for a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "by")]
pub enum Source {
    /// The schedule: the seed is the attestation seed of the clock beacon
    /// of the minute the run started.
    Schedule { beacon: String },
    /// A verifier, through the API.
    Request,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProofStatus {
    pub every_seconds: Option<u64>,
    /// Unix seconds of the next scheduled run.
    pub next_at: Option<u64>,
    pub running: Option<Running>,
    pub last: Option<LastRun>,
    /// Why the agent proves nothing: its challenges file could not be
    /// used when it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Running {
    pub source: Source,
    pub seed: Seed,
    pub started_at: u64,
    pub phase: Option<String>,
    pub done: u64,
    pub total: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LastRun {
    pub source: Source,
    pub seed: Seed,
    pub started_at: u64,
    pub finished_at: u64,
    pub ok: bool,
    /// What was proven, one line per resource (the node's own check).
    pub proven: Vec<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Started,
    Progress,
    /// A phase's last progress.
    PhaseDone,
    Line,
    Finished,
    Failed,
}

/// One progress event; `seq` grows by one per event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub time_unix: u64,
    pub kind: EventKind,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub phase: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub done: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub text: Option<String>,
}

/// Why a run was not started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Busy(String),
    TooSoon {
        seconds_left: u64,
    },
    /// The run could not be started (and was recorded as failed).
    Failed(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Busy(what) => write!(f, "a challenge is running ({what}): wait for it"),
            Refusal::TooSoon { seconds_left } => write!(
                f,
                "the last challenge ended too recently: this node takes a requested challenge again in {seconds_left} s"
            ),
            Refusal::Failed(why) => write!(f, "the challenge could not start: {why}"),
        }
    }
}

#[derive(Default)]
struct EventLog {
    next_seq: u64,
    events: VecDeque<Event>,
    last_progress: Option<Instant>,
}

impl std::fmt::Debug for Challenger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenger")
            .field("config", &self.config)
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

pub struct Challenger {
    config: Config,
    state_dir: PathBuf,
    status: watch::Sender<ProofStatus>,
    events: Mutex<EventLog>,
    new_event: Notify,
}

impl Challenger {
    /// A challenger with the last run's summary read back from `state_dir`.
    pub fn new(config: Config, state_dir: &Path) -> Arc<Challenger> {
        let last = std::fs::read(state_dir.join(LAST_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<LastRun>(&b).ok());
        let status = ProofStatus {
            every_seconds: config.every.map(|d| d.as_secs()),
            last,
            ..ProofStatus::default()
        };
        Arc::new(Challenger {
            config,
            state_dir: state_dir.to_path_buf(),
            status: watch::channel(status).0,
            events: Mutex::new(EventLog::default()),
            new_event: Notify::new(),
        })
    }

    /// Follow the status as it changes.
    #[cfg(test)]
    pub fn subscribe(&self) -> watch::Receiver<ProofStatus> {
        self.status.subscribe()
    }

    pub fn status(&self) -> ProofStatus {
        self.status.borrow().clone()
    }

    pub fn report_path(&self) -> PathBuf {
        self.state_dir.join(REPORT_FILE)
    }

    /// Start a run answering `seed` on a thread of its own; the receiver
    /// fires when it ends. One run at a time; a requested run also waits
    /// out the configured gap after the last.
    pub fn start(
        self: &Arc<Self>,
        seed: Seed,
        source: Source,
    ) -> Result<oneshot::Receiver<()>, Refusal> {
        let now = crate::now_unix();
        let mut refusal = None;
        let gap = self.config.min_request_gap.as_secs();
        self.status.send_if_modified(|s| {
            if let Some(r) = &s.running {
                refusal = Some(Refusal::Busy(
                    r.phase.clone().unwrap_or_else(|| "starting".into()),
                ));
                return false;
            }
            if source == Source::Request {
                if let Some(last) = &s.last {
                    let ready = last.finished_at.saturating_add(gap);
                    if ready > now {
                        refusal = Some(Refusal::TooSoon {
                            seconds_left: ready - now,
                        });
                        return false;
                    }
                }
            }
            s.running = Some(Running {
                source: source.clone(),
                seed,
                started_at: now,
                phase: None,
                done: 0,
                total: 0,
            });
            true
        });
        if let Some(r) = refusal {
            return Err(r);
        }
        self.emit(EventKind::Started, None, Some(format!("seed {seed}")));
        let (tx, rx) = oneshot::channel();
        let me = self.clone();
        let kept = source.clone();
        let nice = match source {
            Source::Schedule { .. } => self.config.nice,
            // A verifier timing the run wants the node's full speed.
            Source::Request => 0,
        };
        let spawned = std::thread::Builder::new()
            .name("xnode-challenge".into())
            .spawn(move || {
                if nice > 0 {
                    // Per thread on Linux; the work's threads inherit it.
                    let _ = rustix::process::setpriority_process(None, nice);
                }
                me.run(seed, source, now);
                let _ = tx.send(());
            });
        if let Err(e) = spawned {
            let why = format!("starting the challenge's thread: {e}");
            self.finish(kept, seed, now, Err(why.clone()));
            return Err(Refusal::Failed(why));
        }
        Ok(rx)
    }

    fn run(&self, seed: Seed, source: Source, started_at: u64) {
        let sink = EventSink { challenger: self };
        let outcome = prove::prove(&self.config.claim, &seed, &sink)
            .map_err(|e| format!("{e:#}"))
            .and_then(|report| {
                let proven = prove::self_check(&self.config.claim, &seed, &report)
                    .map_err(|e| format!("the node's own check failed: {e}"))?;
                let bytes = serde_json::to_vec_pretty(&report).map_err(|e| e.to_string())?;
                xnode_verify::files::write_private(&self.report_path(), &bytes)
                    .map_err(|e| format!("writing {}: {e}", self.report_path().display()))?;
                Ok(proven)
            });
        self.finish(source, seed, started_at, outcome);
    }

    fn finish(
        &self,
        source: Source,
        seed: Seed,
        started_at: u64,
        outcome: Result<Vec<String>, String>,
    ) {
        let (ok, proven, error) = match outcome {
            Ok(p) => (true, p, None),
            Err(e) => (false, Vec::new(), Some(e)),
        };
        let last = LastRun {
            source,
            seed,
            started_at,
            finished_at: crate::now_unix(),
            ok,
            proven,
            error: error.clone(),
        };
        if let Ok(bytes) = serde_json::to_vec_pretty(&last) {
            if let Err(e) =
                xnode_verify::files::write_private(&self.state_dir.join(LAST_FILE), &bytes)
            {
                eprintln!("xnode-agent: challenge: keeping its result: {e}");
            }
        }
        match &error {
            None => {
                eprintln!("xnode-agent: challenge: proven: {}", last.proven.join("; "));
                self.emit(EventKind::Finished, None, Some(last.proven.join("; ")));
            }
            Some(e) => {
                eprintln!("xnode-agent: challenge failed: {e}");
                self.emit(EventKind::Failed, None, Some(e.clone()));
            }
        }
        self.status.send_modify(|s| {
            s.running = None;
            s.last = Some(last);
        });
    }

    fn emit(&self, kind: EventKind, progress: Option<(&str, u64, u64)>, text: Option<String>) {
        let Ok(mut log) = self.events.lock() else {
            return;
        };
        let event = Event {
            seq: log.next_seq,
            time_unix: crate::now_unix(),
            kind,
            phase: progress.map(|p| p.0.to_string()),
            done: progress.map(|p| p.1),
            total: progress.map(|p| p.2),
            text,
        };
        log.next_seq += 1;
        log.events.push_back(event);
        while log.events.len() > EVENTS_KEPT {
            log.events.pop_front();
        }
        drop(log);
        self.new_event.notify_waiters();
    }

    /// The sequence number of the latest event, if there was one.
    pub fn last_event_seq(&self) -> Option<u64> {
        self.events
            .lock()
            .ok()
            .and_then(|log| log.next_seq.checked_sub(1))
    }

    /// The events after `after` (all kept ones for `None`), waiting up to
    /// `wait` for one when there is none yet.
    pub async fn events_after(&self, after: Option<u64>, wait: Duration) -> Vec<Event> {
        let pick = |log: &EventLog| -> Vec<Event> {
            log.events
                .iter()
                .filter(|e| after.is_none_or(|a| e.seq > a))
                .cloned()
                .collect()
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking, so an event between the look and
            // the wait still wakes it.
            let notified = self.new_event.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let found = match self.events.lock() {
                Ok(log) => pick(&log),
                Err(_) => return Vec::new(),
            };
            if !found.is_empty() {
                return found;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Vec::new();
            }
        }
    }

    /// Run the schedule, if the configuration has one; never returns then.
    pub async fn schedule(self: Arc<Self>) {
        let Some(every) = self.config.every else {
            return;
        };
        // The first run falls at a random point of the first period, so
        // nodes booted together do not all prove at once; later ones are
        // a period apart, give or take a tenth.
        let mut wait = every.mul_f64(0.1 + 0.9 * fraction());
        loop {
            let at = crate::now_unix() + wait.as_secs();
            self.status.send_modify(|s| s.next_at = Some(at));
            tokio::time::sleep(wait).await;
            let now = crate::now_unix();
            let beacon = clock_beacon(now);
            let seed = por::report::attestation_seed(&beacon);
            let source = Source::Schedule {
                beacon: hex::encode(beacon),
            };
            match self.start(seed, source) {
                Ok(done) => {
                    let _ = done.await;
                }
                Err(why) => eprintln!("xnode-agent: scheduled challenge skipped: {why}"),
            }
            wait = every.mul_f64(0.9 + 0.2 * fraction());
        }
    }
}

/// A uniform fraction in [0, 1).
fn fraction() -> f64 {
    use rand_core::RngCore;
    (rand_core::OsRng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// The clock beacon of the UTC minute holding `unix`:
/// SHA-256("xnode-clock-beacon/v1 " + "YYYY-MM-DDTHH:MMZ"), the one the
/// attestation timer uses and any verifier recomputes from a time.
pub fn clock_beacon(unix: u64) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(format!("xnode-clock-beacon/v1 {}", utc_minute(unix))).into()
}

/// "YYYY-MM-DDTHH:MMZ" for a Unix time.
fn utc_minute(unix: u64) -> String {
    let t = i64::try_from(unix)
        .ok()
        .and_then(|u| time::OffsetDateTime::from_unix_timestamp(u).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// Progress into the status and the event log.
struct EventSink<'a> {
    challenger: &'a Challenger,
}

impl Progress for EventSink<'_> {
    fn update(&self, phase: &str, done: u64, total: u64, _elapsed: Duration, finished: bool) {
        let c = self.challenger;
        c.status.send_modify(|s| {
            if let Some(r) = &mut s.running {
                r.phase = Some(phase.to_string());
                r.done = done;
                r.total = total;
            }
        });
        let due = match c.events.lock() {
            Ok(mut log) => {
                let due = finished
                    || log
                        .last_progress
                        .is_none_or(|t| t.elapsed() >= PROGRESS_EVERY);
                if due {
                    log.last_progress = Some(Instant::now());
                }
                due
            }
            Err(_) => false,
        };
        if due {
            let kind = if finished {
                EventKind::PhaseDone
            } else {
                EventKind::Progress
            };
            c.emit(kind, Some((phase, done, total)), None);
        }
    }

    fn line(&self, line: &str) {
        self.challenger
            .emit(EventKind::Line, None, Some(line.to_string()));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_clock_beacon_names_the_utc_minute() {
        assert_eq!(utc_minute(0), "1970-01-01T00:00Z");
        // 2026-11-24 20:44:15 UTC, and a leap day.
        assert_eq!(utc_minute(1_795_553_055), "2026-11-24T20:44Z");
        assert_eq!(utc_minute(951_782_400), "2000-02-29T00:00Z");
        // What `printf 'xnode-clock-beacon/v1 %s' 1970-01-01T00:00Z | sha256sum`
        // prints (the attestation timer's own computation).
        assert_eq!(
            hex::encode(clock_beacon(59)),
            "c8d0ee47b881cc543bc4099911e0483f70abebda28e4db6a72bec37468643da4"
        );
    }

    /// A claim a test proves in well under a second: one lane of 2^16
    /// steps and 4 MiB of memory walked 2^16 times. (Storage is proven in
    /// por's tests and the CLI's; its walk bound is a wall-clock bound a
    /// debug build of the tests need not meet.)
    pub fn small_config(every: Option<u64>) -> Config {
        let text = serde_json::json!({
            "schema": SCHEMA,
            "every_seconds": every,
            "claim": {
                "resources": ["cpu", "mem"], "cores": 1, "steps": 65536,
                "memory": "4M", "walk_steps": 65536,
            }
        });
        Config::parse(text.to_string().as_bytes()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn the_schedule_proves_against_the_clock_beacon_and_keeps_the_result() {
        let dir = tempfile::tempdir().unwrap();
        let c = Challenger::new(small_config(Some(3600)), dir.path());
        assert_eq!(c.status().every_seconds, Some(3600));
        let mut status = c.subscribe();
        tokio::spawn(c.clone().schedule());
        let s = status.wait_for(|s| s.last.is_some()).await.unwrap().clone();
        let first_next = s.next_at;
        let last = s.last.unwrap();
        assert!(last.ok, "{last:?}");
        assert_eq!(last.proven.len(), 2, "{last:?}");
        assert!(
            last.proven[0].starts_with("cpu: 1 core(s), 65536 steps"),
            "{last:?}"
        );
        assert!(
            last.proven[1].starts_with("memory: 4194304 bytes"),
            "{last:?}"
        );
        // The seed is the attestation seed of the clock beacon of the
        // minute the run started: anyone can recompute it.
        let Source::Schedule { beacon } = &last.source else {
            panic!("{last:?}")
        };
        assert_eq!(*beacon, hex::encode(clock_beacon(last.started_at)));
        assert_eq!(
            last.seed,
            por::report::attestation_seed(&clock_beacon(last.started_at))
        );
        // The report on disk checks out against that seed.
        let report =
            por::report::ChallengeReport::parse(&std::fs::read(c.report_path()).unwrap()).unwrap();
        prove::self_check(&c.config.claim, &last.seed, &report).unwrap();
        // The next run is planned, about a period on.
        let next = status
            .wait_for(|s| s.next_at != first_next)
            .await
            .unwrap()
            .next_at
            .unwrap();
        assert!(
            (last.finished_at + 3240..=last.finished_at + 3961).contains(&next),
            "{next}"
        );

        // Read back by the next agent.
        let again = Challenger::new(small_config(None), dir.path());
        assert_eq!(again.status().last.unwrap().seed, last.seed);
    }

    #[tokio::test]
    async fn one_run_at_a_time_and_requests_wait_out_the_gap() {
        let dir = tempfile::tempdir().unwrap();
        let c = Challenger::new(small_config(None), dir.path());
        // A run in progress refuses another, whoever asks.
        c.status.send_modify(|s| {
            s.running = Some(Running {
                source: Source::Request,
                seed: Seed([1; 32]),
                started_at: 0,
                phase: Some("disk walk".into()),
                done: 1,
                total: 2,
            })
        });
        let busy = c.start(Seed([2; 32]), Source::Request).unwrap_err();
        assert_eq!(busy, Refusal::Busy("disk walk".into()));
        assert!(busy.to_string().contains("running (disk walk)"), "{busy}");
        c.status.send_modify(|s| s.running = None);

        // A requested run goes; its events tell the phases and the end.
        c.start(Seed([3; 32]), Source::Request)
            .unwrap()
            .await
            .unwrap();
        let events = c.events_after(None, Duration::ZERO).await;
        let kinds: Vec<_> = events.iter().map(|e| e.kind.clone()).collect();
        assert_eq!(kinds.first(), Some(&EventKind::Started), "{kinds:?}");
        assert_eq!(kinds.last(), Some(&EventKind::Finished), "{kinds:?}");
        let phases: Vec<_> = events
            .iter()
            .filter(|e| e.kind == EventKind::PhaseDone)
            .filter_map(|e| e.phase.clone())
            .collect();
        assert_eq!(phases, ["cpu", "mem fill", "mem sweep"]);
        assert!(events.windows(2).all(|w| w[1].seq == w[0].seq + 1));
        // Nothing after the last: an empty page once the wait is over.
        let last_seq = c.last_event_seq().unwrap();
        assert!(c
            .events_after(Some(last_seq), Duration::from_millis(10))
            .await
            .is_empty());

        // Another request within the gap is refused; the schedule is not.
        let soon = c.start(Seed([4; 32]), Source::Request).unwrap_err();
        assert!(
            matches!(soon, Refusal::TooSoon { seconds_left } if seconds_left > 500),
            "{soon:?}"
        );
        let scheduled = Source::Schedule {
            beacon: "00".into(),
        };
        c.start(Seed([5; 32]), scheduled).unwrap().await.unwrap();
        assert!(c.status().last.unwrap().ok);
    }

    #[tokio::test]
    async fn a_failed_run_is_kept_with_its_reason_and_stops_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let c = Challenger::new(small_config(None), dir.path());
        c.start(Seed([6; 32]), Source::Request)
            .unwrap()
            .await
            .unwrap();
        // A damaged plot where the claim keeps its plot: the run fails,
        // saying why, and the plot is left for the operator to look at.
        let plot = dir.path().join("plot");
        let header = por::storage::Plot::header_path(&plot);
        std::fs::write(&header, b"{not a plot header").unwrap();
        let text = serde_json::json!({
            "schema": SCHEMA,
            "claim": {"resources": ["disk"], "cores": 1, "disk": "4M", "plot": plot,
                      "disk_shape": {"label_bytes": "16K", "passes": 2}}
        });
        let other = Challenger::new(
            Config::parse(text.to_string().as_bytes()).unwrap(),
            dir.path(),
        );
        other
            .start(
                Seed([7; 32]),
                Source::Schedule {
                    beacon: "00".into(),
                },
            )
            .unwrap()
            .await
            .unwrap();
        let last = other.status().last.unwrap();
        assert!(!last.ok);
        assert!(last.error.as_deref().unwrap().contains("plot"), "{last:?}");
        assert_eq!(std::fs::read(&header).unwrap(), b"{not a plot header");
        // The last good report stays where it was.
        let report =
            por::report::ChallengeReport::parse(&std::fs::read(c.report_path()).unwrap()).unwrap();
        assert_eq!(report.seed, Seed([6; 32]));
        let events = other.events_after(None, Duration::ZERO).await;
        assert_eq!(events.last().unwrap().kind, EventKind::Failed);
    }

    #[test]
    fn a_challenges_file_is_checked_whole() {
        let ok = br#"{"schema": "xnode.challenges/v1", "every_seconds": 21600,
            "claim": {"resources": ["cpu", "mem"], "cores": 2, "memory": "64M"}}"#;
        let c = Config::parse(ok).unwrap();
        assert_eq!(c.every, Some(Duration::from_secs(21600)));
        assert_eq!(c.nice, 10);
        assert_eq!(c.claim.memory.unwrap().bytes, 64 << 20);
        assert_eq!(c.claim.cpu.unwrap().lanes, 2);

        let bad = br#"{"schema": "xnode.challenges/v2", "every_seconds": 5, "nice": 40,
            "claim": {"resources": ["fpga"]}}"#;
        let e = Config::parse(bad).unwrap_err().to_string();
        for why in [
            "schema: 'xnode.challenges/v2'",
            "every_seconds: at least 60",
            "nice: 40",
            "\"fpga\" has no challenge",
        ] {
            assert!(e.contains(why), "{why}: {e}");
        }
        let e = Config::parse(br#"{"schema": "xnode.challenges/v1", "claim": {"cpus": 2}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `cpus`"), "{e}");
        let e = Config::parse(
            br#"{"schema": "xnode.challenges/v1", "claim": {"resources": ["mem"], "memory": "lots"}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("give bytes"), "{e}");
    }
}
