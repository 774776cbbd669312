//! The machine and the process: CPU model, cores, kernel, arch for the record; our own and the
//! broker's CPU time; and the system limits (open files, ephemeral ports, memory) that stop a
//! connection run, checked before it starts.

use serde_json::{json, Value};
use std::time::Duration;

pub fn describe() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    // x86 says "model name"; aarch64 often has no name, only "CPU part".
    let model = cpuinfo
        .lines()
        .find(|l| {
            l.starts_with("model name") || l.starts_with("Hardware") || l.starts_with("CPU part")
        })
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    // SAFETY: sysconf only reads a configuration value.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    // The load average matters on a shared machine: a busy neighbour shows in every figure.
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    json!({
        "cpu_model": model,
        "cores": online.max(1),
        // What this process may run on (taskset narrows it).
        "cores_allowed": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "loadavg": loadavg,
        "kernel": kernel,
        "arch": std::env::consts::ARCH,
        "os": std::env::consts::OS,
    })
}

/// User + system CPU time of this whole process.
pub fn own_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole `rusage` into the pointer we pass, which points to
    // storage of exactly that type; RUSAGE_SELF is always a valid `who`.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return Duration::ZERO;
    }
    // SAFETY: getrusage returned 0, so it filled the struct (and it was zeroed before anyway).
    let usage = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// User + system CPU time of another process, from `/proc/PID/stat`.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the state field.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as u64 } else { 100 };
    Some(Duration::from_nanos(
        (utime + stime) * 1_000_000_000 / ticks,
    ))
}

/// Raises the open-files soft limit to the hard limit; returns (soft, hard) after.
pub fn raise_nofile() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the rlimit struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return (0, 0);
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we pass; raising soft up to hard is always allowed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    (lim.rlim_cur, lim.rlim_max)
}

fn port_range() -> Option<(u32, u32)> {
    let s = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = s.split_whitespace().map(|v| v.parse::<u32>());
    Some((it.next()?.ok()?, it.next()?.ok()?))
}

fn mem_available_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// Kernel memory a loopback connection costs on both ends, roughly (socket structs and the
/// minimum buffers); used only to warn, not to refuse.
const CONN_MEMORY_ESTIMATE_BYTES: u64 = 20 * 1024;

/// Says which system limit will stop `conns` connections from `sources` addresses, if any.
pub fn limit_warnings(conns: usize, sources: usize, nofile_soft: u64) -> Vec<String> {
    let mut warnings = Vec::new();
    // A few descriptors go to io_uring rings, each core's epoll (and its poller's dup), stdio,
    // and the broker's /proc files.
    let needed = conns as u64 + 32;
    if needed > nofile_soft {
        warnings.push(format!(
            "nofile: {conns} connections need about {needed} file descriptors but this process \
             may open {nofile_soft} (hard limit); expect failures after about {} connections. \
             Raise it with `ulimit -Hn` / limits.conf, or run several processes",
            nofile_soft.saturating_sub(32)
        ));
    }
    if let Some((lo, hi)) = port_range() {
        let per_source = u64::from(hi.saturating_sub(lo) + 1);
        let sources = sources.max(1) as u64;
        if conns as u64 > per_source * sources {
            warnings.push(format!(
                "ip_local_port_range {lo}-{hi} gives {per_source} ports per source address; \
                 {conns} connections over {sources} address(es) need more: add --source \
                 addresses (127.0.0.1-127.0.0.50) or widen the range"
            ));
        }
    }
    if let Some(avail) = mem_available_bytes() {
        let need = conns as u64 * CONN_MEMORY_ESTIMATE_BYTES;
        if need > avail / 2 {
            warnings.push(format!(
                "memory: {conns} connections may need ~{} MiB of kernel memory, {} MiB available",
                need >> 20,
                avail >> 20
            ));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_grows_when_we_work() {
        let before = own_cpu();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(own_cpu() > before);
    }

    #[test]
    fn reads_our_own_stat_file() {
        let cpu = process_cpu(std::process::id()).expect("our own /proc entry exists");
        assert!(cpu <= own_cpu() + Duration::from_millis(20));
        assert!(process_cpu(u32::MAX).is_none());
    }

    #[test]
    fn warns_when_descriptors_run_out() {
        let w = limit_warnings(30_000, 50, 20_000);
        assert!(w.iter().any(|w| w.starts_with("nofile")), "{w:?}");
        assert!(limit_warnings(10, 1, 20_000).is_empty());
    }

    #[test]
    fn machine_names_its_arch() {
        assert_eq!(describe()["arch"], std::env::consts::ARCH);
    }
}
