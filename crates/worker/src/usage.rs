//! What a process uses, read from `/proc`: its CPU time and resident memory, and the
//! processes it started (the engine's workers are its children). Linux only, as the
//! workers are; elsewhere every answer is `None` or empty.

use std::path::Path;

/// A process's CPU time so far and its resident memory now.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// User and system CPU seconds since it started.
    pub cpu_seconds: f64,
    /// Resident set size in bytes.
    pub resident_bytes: u64,
}

/// A child process: its pid and what it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Child {
    pub pid: u32,
    /// The command, as the dashboard names it: `python worker`, `R worker`, or the
    /// program's name.
    pub command: String,
}

/// The usage of process `pid`; `None` once it is gone.
pub fn usage(pid: u32) -> Option<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields = after_command(&stat)?;
    // Fields after the command, from the third: state is [0]; utime [11], stime [12].
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Usage {
        cpu_seconds: (utime + stime) as f64 / clock_ticks(),
        resident_bytes: resident_bytes(pid)?,
    })
}

/// The resident set of a process, from `/proc/PID/statm`; `None` once it is gone.
pub fn resident_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // Safety: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).unwrap_or(4096))
}

/// The processes whose parent is `pid`, by pid: from each of its threads' `children`
/// list where the kernel keeps them, else by scanning every process's parent.
pub fn children(pid: u32) -> Vec<Child> {
    let mut pids = threads_children(pid).unwrap_or_else(|| scan_children(pid));
    pids.sort_unstable();
    pids.dedup();
    pids.into_iter()
        .map(|p| Child {
            pid: p,
            command: command_of(Path::new(&format!("/proc/{p}/cmdline"))),
        })
        .collect()
}

/// The children the kernel lists under each of `pid`'s threads; `None` where it keeps no
/// such lists.
pub fn threads_children(pid: u32) -> Option<Vec<u32>> {
    let mut pids = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let list = std::fs::read_to_string(task.ok()?.path().join("children")).ok()?;
        pids.extend(
            list.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    Some(pids)
}

/// Every process whose parent is `pid`, found by reading each one's `stat`.
pub fn scan_children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| parent_of(p) == Some(pid))
        .collect()
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    after_command(&stat)?.get(1)?.parse().ok()
}

/// The fields of a `/proc/PID/stat` line after `pid (command)`: the command may hold
/// spaces and parentheses, so the split is at the last `)`.
fn after_command(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().collect())
}

/// `python worker` for `engine worker python ...`, `R worker` for `Rscript ...`, else the
/// program's file name.
fn command_of(cmdline: &Path) -> String {
    let raw = std::fs::read(cmdline).unwrap_or_default();
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    name_command(&args)
}

fn name_command(args: &[String]) -> String {
    let program = args
        .first()
        .map(|p| p.rsplit('/').next().unwrap_or(p).to_owned())
        .unwrap_or_else(|| "?".to_owned());
    match (
        args.get(1).map(String::as_str),
        args.get(2).map(String::as_str),
    ) {
        (Some("worker"), Some(language)) => format!("{language} worker"),
        _ if program == "Rscript" => "R worker".to_owned(),
        _ => program,
    }
}

fn clock_ticks() -> f64 {
    // Safety: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_uses_memory_and_cpu() {
        let me = std::process::id();
        let u = usage(me).expect("own usage");
        assert!(u.resident_bytes > 1 << 20, "{u:?}");
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(usage(me).unwrap().cpu_seconds > 0.0);
        assert_eq!(usage(u32::MAX), None);
    }

    #[test]
    fn commands_are_named() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            name_command(&a(&["/usr/bin/engine", "worker", "python"])),
            "python worker"
        );
        assert_eq!(
            name_command(&a(&["/usr/bin/Rscript", "-e", "x"])),
            "R worker"
        );
        assert_eq!(name_command(&a(&["/opt/uv", "pip"])), "uv");
        assert_eq!(name_command(&[]), "?");
    }

    #[test]
    fn stat_lines_split_after_the_command() {
        let f = after_command("12 (a b) c) S 1 12 12").unwrap();
        assert_eq!(f, vec!["S", "1", "12", "12"]);
    }
}
