//! Open-loop pacing. Each publisher owns a schedule of intended send times fixed before the run
//! starts; a late sender does not push later messages back, so the latency measured from the
//! intended time includes the time a message waited to be sent (coordinated omission corrected).

/// When a publisher's messages are due.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// Message `k` is due at `start_ns + k * interval_ns`.
    Paced { start_ns: u64, interval_ns: f64 },
    /// As fast as the connection takes them: every message is due now.
    Max,
}

impl Schedule {
    /// A schedule at `rate_per_s` messages a second (`None`: unpaced), starting `phase` of an
    /// interval after `start_ns` so that publishers sharing a rate do not fire in lockstep.
    pub fn new(start_ns: u64, rate_per_s: Option<f64>, phase: f64) -> Schedule {
        match rate_per_s {
            Some(rate) if rate > 0.0 => {
                let interval_ns = 1e9 / rate;
                Schedule::Paced {
                    start_ns: start_ns + (interval_ns * phase.clamp(0.0, 1.0)) as u64,
                    interval_ns,
                }
            }
            _ => Schedule::Max,
        }
    }

    /// The intended send time of message `seq`; for an unpaced schedule, `now_ns`.
    pub fn intended_ns(&self, seq: u64, now_ns: u64) -> u64 {
        match *self {
            Schedule::Paced {
                start_ns,
                interval_ns,
            } => start_ns + (seq as f64 * interval_ns) as u64,
            Schedule::Max => now_ns,
        }
    }

    /// How many messages are due by `now_ns` in total (sent or not) — `None` when unpaced.
    pub fn due_by(&self, now_ns: u64) -> Option<u64> {
        match *self {
            Schedule::Paced {
                start_ns,
                interval_ns,
            } => Some(if now_ns < start_ns {
                0
            } else {
                ((now_ns - start_ns) as f64 / interval_ns) as u64 + 1
            }),
            Schedule::Max => None,
        }
    }

    /// How many messages the schedule holds before `end_ns`: the count a run must send.
    pub fn count_before(&self, end_ns: u64) -> Option<u64> {
        match *self {
            Schedule::Paced {
                start_ns,
                interval_ns,
            } => Some(if end_ns <= start_ns {
                0
            } else {
                ((end_ns - start_ns) as f64 / interval_ns).ceil() as u64
            }),
            Schedule::Max => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paced_schedule_counts_exactly() {
        let s = Schedule::new(1_000, Some(100.0), 0.0);
        assert_eq!(s.due_by(999), Some(0));
        assert_eq!(s.due_by(1_000), Some(1), "message 0 is due at the start");
        assert_eq!(s.due_by(1_000 + 10_000_000 - 1), Some(1));
        assert_eq!(s.due_by(1_000 + 10_000_000), Some(2));
        // 100 msg/s for 2 s is exactly 200 messages, whatever the phase.
        for phase in [0.0, 0.3, 0.999] {
            let s = Schedule::new(0, Some(100.0), phase);
            let end = 2_000_000_000;
            let start = s.intended_ns(0, 0);
            assert_eq!(s.count_before(end + start), Some(200), "phase {phase}");
        }
    }

    #[test]
    fn intended_times_do_not_drift_when_sending_is_late() {
        let s = Schedule::new(0, Some(1_000.0), 0.0);
        // Sent a whole second late, message 10 still claims its own slot.
        assert_eq!(s.intended_ns(10, 2_000_000_000), 10_000_000);
        assert_eq!(s.due_by(1_000_000_000), Some(1_001));
    }

    #[test]
    fn unpaced_schedule_is_always_due_now() {
        let s = Schedule::new(5, None, 0.5);
        assert_eq!(s, Schedule::Max);
        assert_eq!(s.intended_ns(7, 99), 99);
        assert_eq!(s.due_by(99), None);
        assert_eq!(Schedule::new(5, Some(0.0), 0.0), Schedule::Max);
    }
}
