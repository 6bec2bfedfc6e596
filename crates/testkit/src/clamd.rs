//! A real clamd (Debian's clamav-daemon) started with a small database of our own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running clamd; killed on drop.
pub struct ClamdProcess {
    child: Child,
    dir: PathBuf,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
}

impl ClamdProcess {
    /// Starts clamd with the `.hdb`/`.ndb` files of `sigs` and waits until it answers.
    pub fn start(sigs: &Path) -> ClamdProcess {
        let clamd = Path::new("/usr/sbin/clamd");
        assert!(clamd.exists(), "clamd is not installed: run scripts/test.sh, which installs clamav-daemon");
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("mxshield-clamd-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("db")).unwrap();
        for f in ["mxshield.hdb", "mxshield.ndb"] {
            std::fs::copy(sigs.join(f), dir.join("db").join(f)).unwrap();
        }
        let port = crate::free_port();
        let conf = format!(
            "Foreground yes\nDatabaseDirectory {db}\nTCPSocket {port}\nTCPAddr 127.0.0.1\nLogFile {dir}/clamd.log\nTemporaryDirectory {dir}\nPidFile {dir}/clamd.pid\nStreamMaxLength 1M\n",
            db = dir.join("db").display(),
            dir = dir.display()
        );
        std::fs::write(dir.join("clamd.conf"), conf).unwrap();
        let child = Command::new(clamd)
            .arg(format!("--config-file={}", dir.join("clamd.conf").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let p = ClamdProcess { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !p.answers() {
            assert!(
                Instant::now() < deadline,
                "clamd did not start: {}",
                std::fs::read_to_string(p.dir.join("clamd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn answers(&self) -> bool {
        std::net::TcpStream::connect(self.addr())
            .and_then(|mut s| {
                use std::io::{Read, Write};
                s.write_all(b"zPING\0")?;
                let mut r = Vec::new();
                s.read_to_end(&mut r)?;
                Ok(r.starts_with(b"PONG"))
            })
            .unwrap_or(false)
    }
}

impl Drop for ClamdProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
