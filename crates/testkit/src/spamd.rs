//! A real SpamAssassin `spamd` (Debian's spamd package, with the rules it ships) on loopback,
//! with network tests off (`--local`): no test reaches the Internet.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running spamd; killed on drop.
pub struct SpamdProcess {
    child: Child,
    dir: PathBuf,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
}

impl SpamdProcess {
    /// Starts spamd and waits until it answers a check (its rules take seconds to load).
    pub fn start() -> SpamdProcess {
        let spamd = std::path::Path::new("/usr/sbin/spamd");
        assert!(spamd.exists(), "spamd is not installed: run scripts/test.sh, which installs spamd");
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("mxshield-spamd-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = crate::free_port();
        let log = std::fs::File::create(dir.join("spamd.log")).unwrap();
        let mut cmd = Command::new(spamd);
        cmd.arg(format!("--listen=127.0.0.1:{port}"))
            .arg("--allowed-ips=127.0.0.1")
            .arg("--local")
            .arg("--max-children=2")
            .arg("--syslog=stderr")
            .arg(format!("--pidfile={}", dir.join("spamd.pid").display()))
            .stdout(Stdio::null())
            .stderr(log);
        // spamd refuses to run as root without a user to become
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            cmd.arg("--username=nobody");
        }
        let child = cmd.spawn().unwrap();
        let p = SpamdProcess { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(120);
        while !p.answers() {
            assert!(
                Instant::now() < deadline,
                "spamd did not start: {}",
                std::fs::read_to_string(p.dir.join("spamd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Whether it answers `PING`.
    fn answers(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect_timeout(&self.addr(), Duration::from_secs(1)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        if s.write_all(b"PING SPAMC/1.5\r\n\r\n").is_err() {
            return false;
        }
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer.contains("PONG")
    }
}

impl Drop for SpamdProcess {
    fn drop(&mut self) {
        crate::stop_gracefully(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
