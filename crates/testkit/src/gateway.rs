//! Runs the real `mxshield` binary for black-box tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running `mxshield serve` with its own data directory and config file.
pub struct Gateway {
    /// The binary.
    pub bin: PathBuf,
    /// Its working directory.
    pub dir: PathBuf,
    /// Its configuration file.
    pub config: PathBuf,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Environment variables given to the process (and to [`Gateway::cli`]).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
    log_path: PathBuf,
}

impl Gateway {
    /// Writes `config_toml` to `dir/mxshield.toml`; does not start the process yet.
    pub fn new(bin: &Path, dir: &Path, addr: SocketAddr, config_toml: &str) -> Gateway {
        let config = dir.join("mxshield.toml");
        std::fs::write(&config, config_toml).expect("write config");
        Gateway {
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            config,
            addr,
            env: Vec::new(),
            child: None,
            log_path: dir.join("mxshield.log"),
        }
    }

    /// [`Gateway::new`], then [`Gateway::spawn`].
    pub fn start(bin: &Path, dir: &Path, addr: SocketAddr, config_toml: &str) -> Gateway {
        let mut g = Gateway::new(bin, dir, addr, config_toml);
        g.spawn();
        g
    }

    /// (Re)starts the process and waits for the listener.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path).expect("log file");
        let child = Command::new(&self.bin)
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start mxshield");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !Self::probe(self.addr) {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("mxshield exited with {status}; log:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "mxshield did not listen on {}; log:\n{}", self.addr, self.log());
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Whether the gateway answers on `addr`: reads the greeting, says QUIT and waits for the
    /// close, so the probe's session has ended (and given back its slot) when this returns.
    fn probe(addr: SocketAddr) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(addr) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut greeting = [0u8; 512];
        if !matches!(s.read(&mut greeting), Ok(n) if n > 0) {
            return false;
        }
        let _ = s.write_all(b"QUIT\r\n");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        true
    }

    /// Kills the process with SIGKILL (no clean-up at all) and waits for it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        c.wait().ok()
    }

    /// Sends SIGTERM without waiting.
    pub fn signal_term(&self) {
        if let Some(c) = self.child.as_ref() {
            // SAFETY: sending a signal to our own child process.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
    }

    /// Waits for the process to exit (at most `limit`).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            let c = self.child.as_mut()?;
            if let Ok(Some(status)) = c.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// The process's peak resident set size so far, in KiB (`VmHWM` of `/proc/PID/status`).
    /// Unlike `ru_maxrss` from `wait4`, this is the gateway's own address space: a child keeps
    /// the parent's high-water mark across `exec`, so a test process holding large buffers
    /// would inflate the child's `ru_maxrss`.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Everything the gateway logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until the log contains `needle` (or panics after `limit`).
    pub async fn wait_log(&self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(Instant::now() < deadline, "log never contained {needle:?}:\n{log}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Runs `mxshield --config <config> ARGS…` and returns its output.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.dir)
            .output()
            .expect("run mxshield")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill9();
    }
}
