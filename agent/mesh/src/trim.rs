//! Connection trimming: keep a node's open connections between two
//! watermarks, as go-libp2p's connection manager does.
//!
//! Gossipsub holds a stream open on every connection to a subscribed peer,
//! and an open stream keeps a libp2p connection alive, so without trimming
//! every peer a Kademlia lookup ever touched stays connected. Above the
//! high watermark the oldest unprotected connections are closed down to
//! the low one. Protected are the gossipsub mesh, peers with work in
//! flight, and connections younger than the grace period (a lookup may be
//! using them). A closed peer stays in the routing table and is dialed
//! again when a lookup needs it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// The watermarks and grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    pub low: u32,
    pub high: u32,
    pub grace: Duration,
}

impl Default for Watermarks {
    fn default() -> Self {
        Watermarks {
            low: 96,
            high: 128,
            grace: Duration::from_secs(30),
        }
    }
}

impl Watermarks {
    /// Checked against the hard connection limit it must fit under.
    pub fn validate(&self, max_connections: u32) -> Result<(), String> {
        if self.low == 0 || self.low > self.high {
            return Err(format!(
                "connection watermarks: low ({}) must be at least 1 and at most high ({})",
                self.low, self.high
            ));
        }
        if self.high > max_connections {
            return Err(format!(
                "connection watermarks: high ({}) is above the connection limit ({max_connections})",
                self.high
            ));
        }
        Ok(())
    }

    /// The peers to disconnect, oldest first. `connected` maps each peer to
    /// when its first open connection was established.
    pub fn select(
        &self,
        connected: &HashMap<PeerId, Instant>,
        protected: impl Fn(&PeerId) -> bool,
        now: Instant,
    ) -> Vec<PeerId> {
        let open = connected.len();
        if open <= self.high as usize {
            return Vec::new();
        }
        let mut candidates: Vec<(Instant, PeerId)> = connected
            .iter()
            .filter(|(peer, since)| {
                now.saturating_duration_since(**since) >= self.grace && !protected(peer)
            })
            .map(|(peer, since)| (*since, *peer))
            .collect();
        candidates.sort();
        candidates
            .into_iter()
            .take(open - self.low as usize)
            .map(|(_, peer)| peer)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(low: u32, high: u32) -> Watermarks {
        Watermarks {
            low,
            high,
            grace: Duration::from_secs(10),
        }
    }

    fn peers(n: usize, now: Instant, age_secs: impl Fn(usize) -> u64) -> HashMap<PeerId, Instant> {
        (0..n)
            .map(|i| (PeerId::random(), now - Duration::from_secs(age_secs(i))))
            .collect()
    }

    #[test]
    fn nothing_is_closed_at_or_below_the_high_watermark() {
        let now = Instant::now();
        let c = peers(8, now, |_| 100);
        assert!(marks(4, 8).select(&c, |_| false, now).is_empty());
    }

    #[test]
    fn above_the_high_watermark_the_oldest_go_down_to_the_low_one() {
        let now = Instant::now();
        let c = peers(10, now, |i| 100 + i as u64);
        let closed = marks(4, 8).select(&c, |_| false, now);
        assert_eq!(closed.len(), 6);
        let mut ages: Vec<u64> = c
            .iter()
            .map(|(p, t)| (now - *t).as_secs() + if closed.contains(p) { 1000 } else { 0 })
            .collect();
        ages.sort();
        // The four kept are the four youngest.
        assert_eq!(&ages[..4], &[100, 101, 102, 103]);
    }

    #[test]
    fn protected_and_young_connections_are_kept_even_above_the_watermark() {
        let now = Instant::now();
        // Half within the grace period.
        let c = peers(12, now, |i| if i % 2 == 0 { 1 } else { 100 });
        let protected_peer = *c
            .iter()
            .find(|(_, t)| (now - **t).as_secs() == 100)
            .unwrap()
            .0;
        let closed = marks(2, 8).select(&c, |p| *p == protected_peer, now);
        assert_eq!(closed.len(), 5, "six old ones, one of them protected");
        assert!(!closed.contains(&protected_peer));
        assert!(closed.iter().all(|p| (now - c[p]).as_secs() == 100));
    }

    #[test]
    fn watermarks_must_be_ordered_and_under_the_limit() {
        assert!(marks(4, 8).validate(16).is_ok());
        assert!(marks(0, 8).validate(16).unwrap_err().contains("at least 1"));
        assert!(marks(9, 8)
            .validate(16)
            .unwrap_err()
            .contains("at most high"));
        assert!(marks(4, 32)
            .validate(16)
            .unwrap_err()
            .contains("above the connection limit"));
    }
}
