//! Running a command and reading its peak memory (the kernel's own account, `wait4`).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a finished command printed and used.
#[derive(Debug)]
pub struct Measured {
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Peak resident set size in KiB (`ru_maxrss`).
    pub peak_rss_kib: u64,
    pub elapsed: Duration,
}

/// Runs `cmd` to completion and returns its output, exit code and peak RSS.
// the child is reaped by `wait4` (which also gives its resource usage), not by `Child::wait`
#[allow(clippy::zombie_processes)]
pub fn run(cmd: &mut Command) -> Measured {
    let started = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let mut stdout = Vec::new();
    let _ = out.read_to_end(&mut stdout);
    let stderr = reader.join().unwrap_or_default();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value to be filled in by wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child, whose pid we hold; `status` and `usage` outlive the call.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert!(pid > 0, "wait4 failed");
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
    Measured { status: code, stdout, stderr, peak_rss_kib: usage.ru_maxrss as u64, elapsed: started.elapsed() }
}
