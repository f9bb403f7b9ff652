//! The restart policy of one service as a small state machine: it is told
//! what was observed (a health result, the unit going down, a restart
//! done) and answers what to do. No clocks or I/O here, so every rule is
//! tested directly; the reconcile loop supplies time and acts.

use std::time::Duration;

use serde::Serialize;

use crate::manifest::RestartPolicy;

/// What the reconcile loop should do next for the service.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Nothing,
    /// Start (unit down) or restart (unit up but unhealthy) after `after`.
    Restart {
        after: Duration,
        reason: String,
    },
    /// The threshold is reached: stop acting, and say so loudly.
    GiveUp {
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Up as far as we know (or not yet checked).
    Running,
    /// A restart is scheduled or in flight.
    Restarting,
    /// Too many restarts without a healthy period: left alone until the
    /// service is healthy again or a new manifest arrives.
    GaveUp,
}

#[derive(Debug, Clone)]
pub struct Tracker {
    policy: RestartPolicy,
    phase: Phase,
    /// Failed checks in a row while the unit was active.
    failures: u32,
    /// Restarts made since the service was last healthy.
    restarts_since_healthy: u32,
    /// Every restart the agent made.
    restarts_total: u64,
}

impl Tracker {
    pub fn new(policy: RestartPolicy) -> Tracker {
        Tracker {
            policy,
            phase: Phase::Running,
            failures: 0,
            restarts_since_healthy: 0,
            restarts_total: 0,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.failures
    }

    pub fn restarts_total(&self) -> u64 {
        self.restarts_total
    }

    /// A new manifest may change the policy; the counters carry over.
    pub fn set_policy(&mut self, policy: RestartPolicy) {
        self.policy = policy;
    }

    /// A health check result for an active unit.
    pub fn on_health(&mut self, healthy: bool, detail: &str) -> Action {
        if healthy {
            // A healthy period: the service has recovered, whatever came before.
            self.failures = 0;
            self.restarts_since_healthy = 0;
            self.phase = Phase::Running;
            return Action::Nothing;
        }
        if self.phase != Phase::Running {
            return Action::Nothing;
        }
        self.failures += 1;
        if self.failures < self.policy.unhealthy_after {
            return Action::Nothing;
        }
        self.schedule(format!(
            "unhealthy for {} check(s) in a row: {detail}",
            self.failures
        ))
    }

    /// The unit is down and systemd is not bringing it back itself;
    /// `reason` says how ("the unit is failed (failed)").
    pub fn on_down(&mut self, reason: &str) -> Action {
        if self.phase != Phase::Running {
            return Action::Nothing;
        }
        self.schedule(reason.to_string())
    }

    /// The restart the agent asked for has finished (well or not); the
    /// next observation decides what follows.
    pub fn on_restart_done(&mut self) {
        if self.phase == Phase::Restarting {
            self.phase = Phase::Running;
        }
        self.failures = 0;
    }

    fn schedule(&mut self, reason: String) -> Action {
        if self.restarts_since_healthy >= self.policy.give_up_after {
            self.phase = Phase::GaveUp;
            return Action::GiveUp {
                reason: format!(
                    "{reason}; {} restart(s) without a healthy period, giving up",
                    self.restarts_since_healthy
                ),
            };
        }
        let after = self.backoff(self.restarts_since_healthy);
        self.restarts_since_healthy += 1;
        self.restarts_total += 1;
        self.phase = Phase::Restarting;
        Action::Restart { after, reason }
    }

    /// The first restart after a healthy period is immediate (that is what
    /// keeps detection-to-restart short); each further one waits
    /// `backoff_initial`, doubling up to `backoff_max`.
    fn backoff(&self, previous_restarts: u32) -> Duration {
        if previous_restarts == 0 {
            return Duration::ZERO;
        }
        let p = &self.policy;
        let factor = 2f64.powi(previous_restarts.saturating_sub(1).min(30) as i32);
        Duration::from_secs_f64((p.backoff_initial_secs * factor).min(p.backoff_max_secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RestartPolicy {
        RestartPolicy {
            unhealthy_after: 3,
            backoff_initial_secs: 1.0,
            backoff_max_secs: 5.0,
            give_up_after: 4,
        }
    }

    fn after(a: Action) -> Duration {
        match a {
            Action::Restart { after, .. } => after,
            other => panic!("expected a restart, got {other:?}"),
        }
    }

    #[test]
    fn restarts_only_after_n_failed_checks_in_a_row() {
        let mut t = Tracker::new(policy());
        assert_eq!(t.on_health(false, "refused"), Action::Nothing);
        assert_eq!(t.on_health(false, "refused"), Action::Nothing);
        // A pass in between resets the count.
        assert_eq!(t.on_health(true, "ok"), Action::Nothing);
        assert_eq!(t.on_health(false, "refused"), Action::Nothing);
        assert_eq!(t.on_health(false, "refused"), Action::Nothing);
        match t.on_health(false, "refused") {
            Action::Restart { after, reason } => {
                assert_eq!(after, Duration::ZERO);
                assert!(reason.contains("3 check(s)") && reason.contains("refused"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(t.phase(), Phase::Restarting);
        // Checks that fail while the restart is in flight change nothing.
        assert_eq!(t.on_health(false, "refused"), Action::Nothing);
        assert_eq!(t.restarts_total(), 1);
    }

    #[test]
    fn backoff_doubles_to_the_maximum_then_gives_up() {
        let mut t = Tracker::new(policy());
        let mut waits = Vec::new();
        for _ in 0..4 {
            waits.push(after(t.on_down("failed")));
            t.on_restart_done();
        }
        assert_eq!(
            waits,
            [0.0, 1.0, 2.0, 4.0].map(Duration::from_secs_f64).to_vec()
        );
        match t.on_down("failed") {
            Action::GiveUp { reason } => assert_eq!(
                reason,
                "failed; 4 restart(s) without a healthy period, giving up"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(t.phase(), Phase::GaveUp);
        // Given up: nothing more, however often it fails.
        assert_eq!(t.on_down("failed"), Action::Nothing);
        assert_eq!(t.on_health(false, "x"), Action::Nothing);
        // Healthy again (an operator fixed it): back to normal, counters reset.
        assert_eq!(t.on_health(true, "ok"), Action::Nothing);
        assert_eq!(t.phase(), Phase::Running);
        assert_eq!(after(t.on_down("failed")), Duration::ZERO);
    }

    #[test]
    fn backoff_is_capped() {
        let mut t = Tracker::new(RestartPolicy {
            give_up_after: 100,
            ..policy()
        });
        let mut last = Duration::ZERO;
        for _ in 0..40 {
            last = after(t.on_down("inactive"));
            t.on_restart_done();
        }
        assert_eq!(last, Duration::from_secs(5));
    }

    #[test]
    fn a_healthy_period_resets_the_backoff() {
        let mut t = Tracker::new(policy());
        after(t.on_down("failed"));
        t.on_restart_done();
        assert_eq!(after(t.on_down("failed")), Duration::from_secs(1));
        t.on_restart_done();
        t.on_health(true, "ok");
        assert_eq!(after(t.on_down("failed")), Duration::ZERO);
    }
}
