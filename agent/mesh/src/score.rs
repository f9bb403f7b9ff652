//! The application's score per peer: invalid records and messages cost
//! points; a peer whose score falls to the ban threshold is disconnected
//! and refused from then on.

use std::collections::HashMap;

use libp2p::PeerId;
use serde::Serialize;

pub const BAN_AT: i64 = -100;

#[derive(Debug, Clone, Default, Serialize)]
pub struct PeerScore {
    pub score: i64,
    pub rejected: u64,
    pub last_reason: Option<String>,
    pub banned: bool,
}

#[derive(Debug, Default)]
pub struct Scores {
    peers: HashMap<PeerId, PeerScore>,
}

impl Scores {
    /// Charge `peer` for a refusal. Returns true the moment it is banned.
    pub fn penalize(&mut self, peer: PeerId, points: i64, reason: &str) -> bool {
        let s = self.peers.entry(peer).or_default();
        s.score -= points;
        s.rejected += 1;
        s.last_reason = Some(reason.to_string());
        if !s.banned && s.score <= BAN_AT {
            s.banned = true;
            return true;
        }
        false
    }

    pub fn get(&self, peer: &PeerId) -> Option<&PeerScore> {
        self.peers.get(peer)
    }

    pub fn is_banned(&self, peer: &PeerId) -> bool {
        self.peers.get(peer).is_some_and(|s| s.banned)
    }

    pub fn all(&self) -> impl Iterator<Item = (&PeerId, &PeerScore)> {
        self.peers.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_offences_ban_once() {
        let mut s = Scores::default();
        let p = PeerId::random();
        let bans: Vec<bool> = (0..6).map(|_| s.penalize(p, 25, "forged")).collect();
        assert_eq!(bans, [false, false, false, true, false, false]);
        assert!(s.is_banned(&p));
        assert_eq!(s.get(&p).map(|x| x.rejected), Some(6));
    }
}
