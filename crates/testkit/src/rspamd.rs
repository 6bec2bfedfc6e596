//! A real rspamd (Debian's rspamd package, with its shipped configuration) on loopback: only
//! its normal worker, on a free port; no controller, proxy or fuzzy worker, no Redis, DNS to a
//! port where nothing answers — no test reaches the Internet.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running rspamd; stopped on drop.
pub struct RspamdProcess {
    child: Child,
    dir: PathBuf,
    /// Its normal worker's TCP port on 127.0.0.1.
    pub port: u16,
}

impl RspamdProcess {
    /// Starts rspamd and waits until its normal worker answers (its rules take seconds to load).
    pub fn start() -> RspamdProcess {
        let rspamd = std::path::Path::new("/usr/bin/rspamd");
        assert!(rspamd.exists(), "rspamd is not installed: run scripts/test.sh, which installs it");
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("mxshield-rspamd-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["local.d", "db", "run", "log"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let port = crate::free_port();
        let local = dir.join("local.d");
        let files = [
            ("worker-normal.inc", format!("bind_socket = \"127.0.0.1:{port}\";\n")),
            ("worker-controller.inc", "enabled = false;\n".into()),
            ("worker-proxy.inc", "enabled = false;\n".into()),
            ("worker-fuzzy.inc", "enabled = false;\n".into()),
            ("logging.inc", "type = \"console\";\nlevel = \"error\";\n".into()),
            ("redis.conf", "servers = \"\";\n".into()),
            ("options.inc", "dns { nameserver = [\"127.0.0.1:1\"]; }\n".into()),
        ];
        for (name, text) in files {
            std::fs::write(local.join(name), text).unwrap();
        }
        let log = std::fs::File::create(dir.join("rspamd.log")).unwrap();
        let var = |k: &str, v: &std::path::Path| format!("--var={k}={}", v.display());
        let mut cmd = Command::new(rspamd);
        cmd.arg("-f")
            .arg(var("LOCAL_CONFDIR", &dir))
            .arg(var("DBDIR", &dir.join("db")))
            .arg(var("RUNDIR", &dir.join("run")))
            .arg(var("LOGDIR", &dir.join("log")))
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(log);
        // rspamd refuses to run as root without a user to become
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            cmd.args(["-u", "_rspamd", "-g", "_rspamd"]);
            let _ = Command::new("chown").args(["-R", "_rspamd:_rspamd"]).arg(&dir).status();
        }
        let child = cmd.spawn().unwrap();
        let p = RspamdProcess { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(120);
        while std::net::TcpStream::connect_timeout(&p.addr(), Duration::from_secs(1)).is_err() {
            assert!(
                Instant::now() < deadline,
                "rspamd did not start: {}",
                std::fs::read_to_string(p.dir.join("rspamd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for RspamdProcess {
    fn drop(&mut self) {
        crate::stop_gracefully(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
