//! A worker lives no longer than its engine, and what a worker starts lives no longer than
//! the worker.
//!
//! Engine side ([`child_setup`], run between fork and exec): the worker leads a process
//! group of its own, so the programs a model starts are killed with it ([`kill_group`], on
//! stop, limit, job end and undeploy), and it gets SIGHUP when the thread that spawned it
//! exits. That signal is per *thread* of the engine, so a thread ending inside a live
//! engine also sends it: the worker side checks that its parent really changed before it
//! acts, and does not rely on the signal alone.
//!
//! Worker side ([`guard`], for workers built on this crate's [`serve`](crate::serve)): on
//! that SIGHUP, or when the engine's end of the protocol socket closes (a watcher thread,
//! which sees it even while the model's code is busy and holds the interpreter), the worker
//! kills its whole group, itself included. Workers speaking their own protocol (`Rscript`)
//! die of SIGHUP's default action instead; their own children are not covered then.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

/// The signal a worker gets when its engine (the spawning thread) goes away.
const PARENT_DEATH_SIGNAL: libc::c_int = libc::SIGHUP;

/// Sets the worker up in the forked child before exec: parent-death signal, and a check
/// that the engine did not die before it was set. The process group comes from
/// `Command::process_group(0)`. Only async-signal-safe calls.
pub(crate) fn child_setup(engine_pid: libc::pid_t) -> std::io::Result<()> {
    // Safety: prctl and getppid are async-signal-safe and touch no memory of ours.
    unsafe {
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            PARENT_DEATH_SIGNAL as libc::c_ulong,
            0,
            0,
            0,
        ) < 0
        {
            return Err(std::io::Error::last_os_error());
        }
        if libc::getppid() != engine_pid {
            // The engine died between fork and prctl: nobody will ever talk to this worker.
            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    Ok(())
}

/// Kills the process group a worker leads (the worker and everything it started that did
/// not leave the group).
pub fn kill_group(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid > 1 {
        // Safety: kill(2) with a negative pid signals the group the worker leads; the group
        // id stays reserved while any member lives, so it cannot name another group.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

// Worker side. Signal handlers can reach only statics; these are written once by `guard`
// before the handler is installed, in the worker process (never in the engine).
static ENGINE_PID: AtomicI32 = AtomicI32::new(0);
static GROUP_LEADER: AtomicBool = AtomicBool::new(false);
static ENDING: AtomicBool = AtomicBool::new(false);

/// Ties this worker process to its engine: see the module's documentation. `conn` is the
/// protocol socket.
pub(crate) fn guard(conn: RawFd) {
    // Safety: getppid, getpgrp and getpid have no preconditions.
    let (ppid, leader) = unsafe { (libc::getppid(), libc::getpgrp() == libc::getpid()) };
    ENGINE_PID.store(ppid, Ordering::SeqCst);
    GROUP_LEADER.store(leader, Ordering::SeqCst);
    // Safety: the handler only calls async-signal-safe functions (getppid, kill, _exit)
    // and reads atomics; sigaction gets a zeroed, filled struct.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_parent_death as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(PARENT_DEATH_SIGNAL, &action, std::ptr::null_mut());
    }
    let _ = std::thread::Builder::new()
        .name("engine-watch".into())
        .spawn(move || watch(conn, ppid));
}

/// The engine asked this worker to stop: its end of the socket closing is expected now.
pub(crate) fn ending() {
    ENDING.store(true, Ordering::SeqCst);
}

/// The engine went away (or shut the connection without asking the worker to stop): ends
/// the worker and its group now.
pub(crate) fn engine_gone() -> ! {
    // Safety: kill, getpid and _exit are async-signal-safe; kill(0, ...) is used only when
    // this process leads its group, so it never reaches the engine's group.
    unsafe {
        if GROUP_LEADER.load(Ordering::SeqCst) {
            libc::kill(0, libc::SIGKILL);
        }
        libc::kill(libc::getpid(), libc::SIGKILL);
        libc::_exit(137)
    }
}

extern "C" fn on_parent_death(_: libc::c_int) {
    // Safety: getppid is async-signal-safe.
    if unsafe { libc::getppid() } != ENGINE_PID.load(Ordering::SeqCst) {
        engine_gone();
    }
    // Otherwise a thread of the engine ended, not the engine: carry on.
}

fn watch(conn: RawFd, ppid: libc::pid_t) {
    loop {
        let mut fds = libc::pollfd {
            fd: conn,
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // Safety: poll on one pollfd we own for the call.
        let n = unsafe { libc::poll(&mut fds, 1, 500) };
        if ENDING.load(Ordering::SeqCst) {
            return;
        }
        let hung_up = n > 0 && fds.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0;
        // Safety: getppid has no preconditions.
        if hung_up || unsafe { libc::getppid() } != ppid {
            engine_gone();
        }
        if n < 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
