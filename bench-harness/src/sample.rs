//! What the harness reads from `/proc` about a broker: CPU time (utime + stime from
//! `/proc/PID/stat`) and resident memory (`VmRSS` from `/proc/PID/status`), sampled on a timer
//! thread while the load runs, and the arithmetic that turns a series of samples into the
//! figures of one measured window.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcSample {
    /// Seconds since the sampler started.
    pub at_s: f64,
    /// User + system CPU seconds the process has used since it started (all its threads).
    pub cpu_s: f64,
    pub rss_bytes: u64,
    /// Open file descriptors (every tenth sample: listing 20,000 of them is not free).
    pub fd_count: Option<u64>,
}

/// Clock ticks per second for `/proc/PID/stat` times.
fn clock_ticks_per_s() -> u64 {
    // SAFETY: sysconf only reads a configuration value; it has no memory effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100 // Linux's USER_HZ on every architecture we run on.
    }
}

/// utime + stime of `pid` in seconds, or `None` when the process is gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu_ticks(&stat).map(|t| t as f64 / clock_ticks_per_s() as f64)
}

/// utime + stime, in clock ticks, from the text of `/proc/PID/stat`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name sits in parentheses and may itself hold spaces or ')': the fields we
    // want come after the *last* ')'. There, field 3 (state) is index 0, so utime (field 14)
    // is index 11 and stime (field 15) index 12.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident set size of `pid` in bytes, or `None` when the process is gone.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_rss_bytes(&status)
}

/// `VmRSS:   1234 kB` from the text of `/proc/PID/status`, in bytes.
pub fn parse_status_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => Some(value * 1024),
        _ => None,
    }
}

/// Open file descriptors of `pid` (sockets included), or `None` when the process is gone.
pub fn fd_count(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// Samples one process every `period` on its own thread until `stop`.
pub struct Sampler {
    samples: Arc<Mutex<Vec<ProcSample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    started: Instant,
}

impl Sampler {
    /// A sampler that has already taken its first sample.
    pub fn start(pid: u32, period: Duration) -> Sampler {
        let samples = Arc::new(Mutex::new(Vec::with_capacity(4096)));
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let take = move |out: &Mutex<Vec<ProcSample>>, n: u64| {
            if let (Some(cpu_s), Some(rss)) = (cpu_seconds(pid), rss_bytes(pid)) {
                let s = ProcSample {
                    at_s: started.elapsed().as_secs_f64(),
                    cpu_s,
                    rss_bytes: rss,
                    fd_count: if n % 10 == 0 { fd_count(pid) } else { None },
                };
                out.lock()
                    .expect("the sampler never panics holding the lock")
                    .push(s);
            }
        };
        take(&samples, 0);
        let thread = {
            let (samples, stop) = (samples.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Acquire) {
                    std::thread::sleep(period);
                    n += 1;
                    take(&samples, n);
                }
            })
        };
        Sampler {
            samples,
            stop,
            thread: Some(thread),
            started,
        }
    }

    /// The instant the sampler's `at_s` counts from.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Stops the thread and hands back every sample, oldest first.
    pub fn finish(mut self) -> Vec<ProcSample> {
        self.halt();
        std::mem::take(&mut *self.samples.lock().expect("the sampler thread has stopped"))
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.halt();
    }
}

/// What the broker did inside one window of a sample series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowFigures {
    pub cpu_s: f64,
    pub rss_max_bytes: u64,
    pub rss_mean_bytes: u64,
    /// The most file descriptors seen open in the window (None: no fd sample fell in it).
    pub fd_max_count: Option<u64>,
    /// How many samples fell inside the window (few means the figures are rough).
    pub sample_count: usize,
}

/// CPU seconds at `t`, interpolated linearly between the samples around it (clamped at the
/// ends): the window edges rarely land on a sample.
fn cpu_at(samples: &[ProcSample], t: f64) -> Option<f64> {
    let first = samples.first()?;
    let last = samples.last()?;
    if t <= first.at_s {
        return Some(first.cpu_s);
    }
    if t >= last.at_s {
        return Some(last.cpu_s);
    }
    let i = samples.partition_point(|s| s.at_s <= t);
    let (a, b) = (samples[i - 1], samples[i]);
    let f = if b.at_s > a.at_s {
        (t - a.at_s) / (b.at_s - a.at_s)
    } else {
        0.0
    };
    Some(a.cpu_s + f * (b.cpu_s - a.cpu_s))
}

/// CPU used and memory held between `from_s` and `to_s` (seconds on the sampler's clock).
pub fn window(samples: &[ProcSample], from_s: f64, to_s: f64) -> Option<WindowFigures> {
    if to_s < from_s {
        return None;
    }
    let cpu_s = cpu_at(samples, to_s)? - cpu_at(samples, from_s)?;
    let inside: Vec<&ProcSample> = samples
        .iter()
        .filter(|s| s.at_s >= from_s && s.at_s <= to_s)
        .collect();
    // A window shorter than the period may hold no sample: use the nearest one after it.
    let rss: Vec<u64> = if inside.is_empty() {
        samples
            .iter()
            .find(|s| s.at_s >= from_s)
            .or(samples.last())
            .map(|s| vec![s.rss_bytes])
            .unwrap_or_default()
    } else {
        inside.iter().map(|s| s.rss_bytes).collect()
    };
    let rss_max_bytes = rss.iter().copied().max()?;
    let rss_mean_bytes = rss.iter().sum::<u64>() / rss.len() as u64;
    Some(WindowFigures {
        cpu_s: cpu_s.max(0.0),
        rss_max_bytes,
        rss_mean_bytes,
        fd_max_count: inside.iter().filter_map(|s| s.fd_count).max(),
        sample_count: inside.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CPU time of this thread from the kernel's clock, a source independent of /proc.
    fn thread_cpu() -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec into the struct we own.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        assert_eq!(rc, 0, "CLOCK_THREAD_CPUTIME_ID exists on Linux");
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    /// Spins until this thread has used `d` of CPU (wall time varies on a busy machine).
    fn burn(d: Duration) -> u64 {
        let start = thread_cpu();
        let mut x = 0u64;
        while thread_cpu() - start < d {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            std::hint::black_box(x);
        }
        x
    }

    #[test]
    fn own_cpu_time_grows_with_work() {
        let me = std::process::id();
        let before = cpu_seconds(me).expect("our own /proc/PID/stat is readable");
        burn(Duration::from_millis(300));
        let after = cpu_seconds(me).expect("still readable");
        // This thread alone used 300 ms; /proc counts in 10 ms ticks, so at least 0.28 s
        // shows (other test threads can only add to it).
        assert!(after - before >= 0.28, "cpu grew by {}", after - before);
    }

    #[test]
    fn own_rss_counts_touched_memory() {
        let me = std::process::id();
        let before = rss_bytes(me).expect("our own /proc/PID/status is readable");
        assert!(
            before > 100 * 1024,
            "a Rust test binary holds more than 100 KB"
        );
        let mut block = vec![0u8; 64 << 20];
        for i in (0..block.len()).step_by(4096) {
            block[i] = 1; // touch every page so it becomes resident
        }
        let after = rss_bytes(me).expect("still readable");
        std::hint::black_box(&block);
        assert!(
            after >= before + (48 << 20),
            "64 MiB touched, RSS went {before} -> {after}"
        );
    }

    #[test]
    fn fd_count_sees_our_own_files() {
        let me = std::process::id();
        let before = fd_count(me).expect("our own /proc/PID/fd is listable");
        let files: Vec<std::fs::File> = (0..20)
            .map(|_| std::fs::File::open("/proc/self/stat").expect("open"))
            .collect();
        let during = fd_count(me).expect("listable");
        drop(files);
        // Other test threads may open or close a few files meanwhile.
        assert!(
            during >= before + 15,
            "{before} -> {during} with 20 more files open"
        );
    }

    #[test]
    fn stat_with_a_hostile_command_name() {
        // comm may hold spaces and parentheses; the fields after the last ')' are what count.
        let stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 5 1 1";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(325));
        assert_eq!(parse_stat_cpu_ticks("42 (x"), None);
        let status = "Name:\tx\nVmPeak:\t  900 kB\nVmRSS:\t  1234 kB\nThreads: 1\n";
        assert_eq!(parse_status_rss_bytes(status), Some(1234 * 1024));
        assert_eq!(parse_status_rss_bytes("Name:\tkthread\n"), None);
    }

    #[test]
    fn sampler_sees_our_own_burn() {
        let sampler = Sampler::start(std::process::id(), Duration::from_millis(20));
        burn(Duration::from_millis(400));
        let samples = sampler.finish();
        assert!(samples.len() >= 10, "{} samples in 400 ms", samples.len());
        assert!(samples.windows(2).all(|w| w[0].at_s <= w[1].at_s));
        let whole = window(&samples, 0.0, samples[samples.len() - 1].at_s).expect("samples");
        assert!(whole.cpu_s >= 0.25, "window cpu {}", whole.cpu_s);
        assert!(whole.rss_max_bytes >= whole.rss_mean_bytes);
    }

    #[test]
    fn window_interpolates_between_samples() {
        let s = |at_s, cpu_s, rss_bytes| ProcSample {
            at_s,
            cpu_s,
            rss_bytes,
            fd_count: Some(rss_bytes / 100),
        };
        let series = [s(0.0, 1.0, 100), s(1.0, 2.0, 300), s(2.0, 4.0, 200)];
        let w = window(&series, 0.5, 1.5).expect("inside");
        assert!((w.cpu_s - (3.0 - 1.5)).abs() < 1e-9, "{}", w.cpu_s);
        assert_eq!((w.rss_max_bytes, w.sample_count), (300, 1));
        assert_eq!(w.fd_max_count, Some(3));
        let w = window(&series, -1.0, 9.0).expect("clamped");
        assert!((w.cpu_s - 3.0).abs() < 1e-9);
        assert_eq!(w.rss_mean_bytes, 200);
        assert!(window(&series, 2.0, 1.0).is_none());
        assert!(window(&[], 0.0, 1.0).is_none());
    }
}
