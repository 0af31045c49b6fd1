//! Process metrics for `/metrics` from `/proc/self` (Linux), under the
//! names Prometheus client libraries use (`process_*`), so that standard
//! dashboards and alerts apply. Read at scrape time; nothing is kept. On
//! systems without `/proc` the families are left out.

use std::fmt::Write as _;

/// Clock ticks per second of `/proc` times: the kernel's `USER_HZ`, 100 on
/// every Linux architecture (as the Prometheus Go client assumes too).
const USER_HZ: f64 = 100.0;

/// What one scrape reads.
#[derive(Debug, Default, PartialEq)]
pub struct Process {
    /// User + system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Start time, seconds since the Unix epoch.
    pub start_time: f64,
    /// Resident set size, bytes.
    pub resident_bytes: u64,
    /// Virtual memory size, bytes.
    pub virtual_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit on open file descriptors (`None`: unlimited).
    pub max_fds: Option<u64>,
}

/// Read `/proc/self`; `None` where it cannot be read.
pub fn read() -> Option<Process> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    let mut p = parse(&stat, &status, &boot, &limits)?;
    // The directory's own descriptor was open while it was listed.
    p.open_fds = open_fds.saturating_sub(1);
    Some(p)
}

/// Parse the files' contents (`/proc/self/stat`, `/proc/self/status`,
/// `/proc/stat`, `/proc/self/limits`).
pub fn parse(stat: &str, status: &str, boot: &str, limits: &str) -> Option<Process> {
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is field 3, utime 14, stime 15, starttime 22.
    let after = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    let (utime, stime, start) = (field(14)?, field(15)?, field(22)?);
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|k| k * 1024)
    };
    let btime: u64 = boot
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let max_fds = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l["Max open files".len()..].split_whitespace().next())
        .and_then(|v| v.parse().ok());
    Some(Process {
        cpu_seconds: (utime + stime) as f64 / USER_HZ,
        start_time: btime as f64 + start as f64 / USER_HZ,
        resident_bytes: kib("VmRSS:").unwrap_or(0),
        virtual_bytes: kib("VmSize:").unwrap_or(0),
        open_fds: 0,
        max_fds,
    })
}

/// Append the `process_*` families (nothing without `/proc`).
pub fn render(out: &mut String) {
    let Some(p) = read() else { return };
    let mut family = |name: &str, ty: &str, help: &str, value: String| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {ty}");
        let _ = writeln!(out, "{name} {value}");
    };
    family(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        p.cpu_seconds.to_string(),
    );
    family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        p.start_time.to_string(),
    );
    family(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        p.resident_bytes.to_string(),
    );
    family(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        p.virtual_bytes.to_string(),
    );
    family(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        p.open_fds.to_string(),
    );
    if let Some(max) = p.max_fds {
        family(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            max.to_string(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "4242 (tether (x) y) S 1 4242 4242 0 -1 4194560 512 0 0 0 250 50 0 0 20 0 3 0 12345 1000000 900 18446744073709551615";
        let status = "Name:\ttether\nVmSize:\t  123456 kB\nVmRSS:\t    2048 kB\n";
        let boot = "cpu  1 2 3\nbtime 1700000000\nprocesses 5\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \nMax open files            1024                 524288               files     \n";
        let p = parse(stat, status, boot, limits).unwrap();
        assert_eq!(p.cpu_seconds, 3.0);
        assert!(
            (p.start_time - 1_700_000_123.45).abs() < 1e-3,
            "{}",
            p.start_time
        );
        assert_eq!(p.resident_bytes, 2048 * 1024);
        assert_eq!(p.virtual_bytes, 123_456 * 1024);
        assert_eq!(p.max_fds, Some(1024));
        let unlimited = limits.replace("1024 ", "unlimited ");
        assert_eq!(parse(stat, status, boot, &unlimited).unwrap().max_fds, None);
        assert_eq!(parse("garbage", status, boot, limits), None);
    }

    #[test]
    fn reads_this_process() {
        let p = read().expect("/proc is readable here");
        assert!(p.resident_bytes > 0 && p.open_fds >= 3 && p.cpu_seconds >= 0.0);
    }
}
