//! The keepalive deadline: a client that sends nothing for 1.5 × its keep alive is gone
//! [MQTT-3.1.2-24]. Keep alive 0 disables it.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    interval_s: u16,
    deadline: Option<Instant>,
}

impl Keepalive {
    pub fn new(interval_s: u16, now: Instant) -> Keepalive {
        let mut keepalive = Keepalive {
            interval_s,
            deadline: None,
        };
        keepalive.touch(now);
        keepalive
    }

    /// No keep alive yet, only a fixed `deadline` (a new connection's connect timeout):
    /// a packet does not move it.
    pub fn until(deadline: Instant) -> Keepalive {
        Keepalive {
            interval_s: 0,
            deadline: Some(deadline),
        }
    }

    pub fn interval_s(&self) -> u16 {
        self.interval_s
    }

    /// A packet arrived at `now`: the deadline moves.
    pub fn touch(&mut self, now: Instant) {
        if self.interval_s > 0 {
            self.deadline = Some(now + Duration::from_millis(u64::from(self.interval_s) * 1500));
        }
    }

    /// When the client is gone if nothing arrives; `None` with keep alive 0.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    pub fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|at| now >= at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_is_one_and_a_half_intervals_after_the_last_packet() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(10, t0);
        assert!(!k.expired(t0 + Duration::from_millis(14_999)));
        assert!(k.expired(t0 + Duration::from_secs(15)));
        k.touch(t0 + Duration::from_secs(10));
        assert!(!k.expired(t0 + Duration::from_secs(24)));
        assert!(k.expired(t0 + Duration::from_secs(25)));
    }

    #[test]
    fn a_fixed_deadline_is_not_moved_by_packets() {
        let t0 = Instant::now();
        let mut k = Keepalive::until(t0 + Duration::from_secs(10));
        k.touch(t0 + Duration::from_secs(5));
        assert!(!k.expired(t0 + Duration::from_millis(9_999)));
        assert!(k.expired(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn zero_never_expires() {
        let t0 = Instant::now();
        let k = Keepalive::new(0, t0);
        assert!(!k.expired(t0 + Duration::from_secs(1_000_000)));
    }
}
