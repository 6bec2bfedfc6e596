//! Releases published into a directory and checked as a node checks them: accepted ones are
//! installed and load again from the store; each kind of bad release is refused with its
//! reason and the release in use stays.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mxshield_sigupdate::keys::{PublicKey, SecretKey};
use mxshield_sigupdate::manifest::Manifest;
use mxshield_sigupdate::release::{self, Check, Judge, Publish, Refusal};
use mxshield_sigupdate::scan;
use mxshield_sigupdate::source::Source;
use mxshield_sigupdate::store::Store;
use scan::Limits;

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("mxshield-releases-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const NOW: i64 = 1_800_000_000;

/// A small database: EICAR by body signature, a hash signature, and a freshclam state file
/// that is not part of a release.
fn database(dir: &Path) -> PathBuf {
    let db = dir.join("db");
    std::fs::create_dir_all(&db).unwrap();
    let eicar = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
    let hex: String = eicar.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(db.join("local.ndb"), format!("Test.Eicar:0:*:{hex}\n")).unwrap();
    std::fs::write(db.join("local.hdb"), "44d88612fea8a8f36de82e1278abb02f:68:Test.Eicar.Hash\n").unwrap();
    std::fs::write(db.join("freshclam.dat"), b"state").unwrap();
    db
}

fn publish(db: &Path, repo: &Path, key: &SecretKey) -> Manifest {
    let p = Publish { db, repo, expires: Duration::from_secs(48 * 3600), now: NOW };
    release::publish(&p, key).unwrap()
}

fn judge(trusted: &[PublicKey], in_use: Option<u64>) -> Judge<'_> {
    Judge { trusted, in_use, now: NOW + 60, limits: Limits::default(), previous: None, options: Default::default() }
}

/// Checks `repo` with `judge`, installing into `store` what is new.
fn check(repo: &Path, store: &Store, judge: &Judge<'_>) -> Result<Option<u64>, Refusal> {
    let staging = store.staging().unwrap();
    let (found, _) = release::check(&Source::Dir(repo.to_path_buf()), judge, None, &staging, &|h| store.have(h))?;
    match found {
        Check::UpToDate => Ok(None),
        Check::New(staged) => {
            let v = staged.manifest.version;
            store.install(&staged).unwrap();
            Ok(Some(v))
        }
    }
}

#[test]
fn a_release_is_published_checked_installed_and_loaded() {
    let d = Dir::new("ok");
    let db = database(&d.0);
    let repo = d.0.join("repo");
    let key = SecretKey::generate().unwrap();
    let trusted = [key.public()];
    let m = publish(&db, &repo, &key);
    assert_eq!(m.version, 1);
    let names: Vec<&str> = m.payloads.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["local.hdb", "local.ndb", release::MARKER_FILE], "freshclam.dat is not a payload");
    let expected: Vec<Option<&str>> = m.vectors.iter().map(|v| v.expect.as_deref()).collect();
    assert_eq!(expected, [Some("Mxshield.Release.Marker.1"), Some("Test.Eicar.Hash"), None, None]);

    let store = Store::open(&d.0.join("node")).unwrap();
    assert_eq!(check(&repo, &store, &judge(&trusted, None)).unwrap(), Some(1));
    assert_eq!(store.current(), Some(1));
    assert_eq!(check(&repo, &store, &judge(&trusted, Some(1))).unwrap(), None, "up to date");

    // a second release: unchanged payloads are not written again
    let payloads = std::fs::read_dir(repo.join("payloads")).unwrap().count();
    let m2 = publish(&db, &repo, &key);
    assert_eq!(m2.version, 2);
    let added = std::fs::read_dir(repo.join("payloads")).unwrap().count() - payloads;
    assert_eq!(added, 2, "only the new marker and its sample");
    // built beside release 1 in use, release 2 takes over its unchanged files' compiled parts
    let (one, _) = store.load(&trusted, Limits::default(), Default::default());
    let one = one.unwrap().signatures;
    let staging = store.staging().unwrap();
    let j = Judge { previous: Some(&one), ..judge(&trusted, Some(1)) };
    let (found, _) = release::check(&Source::Dir(repo.clone()), &j, None, &staging, &|h| store.have(h)).unwrap();
    let Check::New(staged) = found else { panic!("release 2 not found") };
    assert_eq!(staged.signatures.parts_shared_with(&one), 2, "local.hdb and local.ndb are unchanged");
    store.install(&staged).unwrap();
    assert_eq!(store.current(), Some(2));

    let (loaded, errors) = store.load(&trusted, Limits::default(), Default::default());
    let loaded = loaded.expect("a release");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(loaded.manifest.version, 2);
    assert_eq!(loaded.signatures.version, "release-2");
    // the marker of release 2 is found by it, release 1's is not
    let engine = scan::Engine::new(loaded.signatures.clone(), Limits::default());
    let marker = |v: u64| {
        let m = Manifest::parse(&std::fs::read(repo.join(release::manifest_path(v))).unwrap()).unwrap();
        std::fs::read(repo.join(release::payload_path(&m.vectors[0].sha256))).unwrap()
    };
    assert!(engine.scan_bytes("m2", &marker(2)).verdict().is_infected());
    assert!(!engine.scan_bytes("m1", &marker(1)).verdict().is_infected());
}

/// Each bad release is refused with its reason, and the release in use stays.
#[test]
fn bad_releases_are_refused_with_their_reason() {
    let d = Dir::new("bad");
    let db = database(&d.0);
    let repo = d.0.join("repo");
    let key = SecretKey::generate().unwrap();
    let trusted = [key.public()];
    publish(&db, &repo, &key);
    let store = Store::open(&d.0.join("node")).unwrap();
    assert_eq!(check(&repo, &store, &judge(&trusted, None)).unwrap(), Some(1));
    let m = publish(&db, &repo, &key);
    let manifest = repo.join(release::manifest_path(2));
    let good = std::fs::read(&manifest).unwrap();
    let sig = manifest.with_extension("json.minisig");
    let good_sig = std::fs::read(&sig).unwrap();
    let restore = || {
        std::fs::write(&manifest, &good).unwrap();
        std::fs::write(&sig, &good_sig).unwrap();
    };
    let refused = |j: &Judge<'_>| check(&repo, &store, j).unwrap_err();
    let j = judge(&trusted, Some(1));

    // one byte of the manifest changed after signing
    let mut tampered = good.clone();
    let at = tampered.iter().position(|&b| b == b'4').unwrap();
    tampered[at] = b'5';
    std::fs::write(&manifest, &tampered).unwrap();
    assert!(matches!(refused(&j), Refusal::Signature(_)), "{}", refused(&j));
    restore();

    // an untrusted key; then the same key trusted next to another (rotation)
    let other = SecretKey::generate().unwrap().public();
    let r = refused(&judge(std::slice::from_ref(&other), Some(1)));
    assert!(r.to_string().contains("not trusted"), "{r}");

    // a payload changed by one byte, then truncated (the marker: the only payload the node
    // does not hold already — what it holds by hash is not fetched again)
    let marker = m.payloads.iter().find(|p| p.name == release::MARKER_FILE).unwrap();
    let payload = repo.join(release::payload_path(&marker.sha256));
    let original = std::fs::read(&payload).unwrap();
    let mut flipped = original.clone();
    flipped[0] ^= 1;
    std::fs::write(&payload, &flipped).unwrap();
    let r = refused(&j);
    assert!(matches!(&r, Refusal::Payload { why, .. } if why.contains("SHA-256")), "{r}");
    std::fs::write(&payload, &original[..original.len() - 1]).unwrap();
    let r = refused(&j);
    assert!(matches!(&r, Refusal::Payload { why, .. } if why.contains("bytes")), "{r}");
    std::fs::write(&payload, &original).unwrap();

    // lower or equal version than the one in use
    assert_eq!(refused(&judge(&trusted, Some(3))), Refusal::NotNewer { offered: 2, in_use: 3 });

    // expired
    let late = Judge { now: m.expires, ..judge(&trusted, Some(1)) };
    assert_eq!(refused(&late), Refusal::Expired(m.expires));

    // validly signed but malformed; validly signed with a self-test vector that fails
    let resign = |bytes: &[u8]| {
        std::fs::write(&manifest, bytes).unwrap();
        std::fs::write(&sig, key.sign(bytes, "tampered")).unwrap();
    };
    resign(b"{\"format\": 1}");
    assert!(matches!(refused(&j), Refusal::Malformed(_)), "{}", refused(&j));
    let mut wrong = m.clone();
    wrong.vectors[0].expect = Some("Some.Other.Name".into());
    resign(&wrong.to_bytes());
    assert!(matches!(refused(&j), Refusal::SelfTest(_)), "{}", refused(&j));
    let mut renumbered = m.clone();
    renumbered.version = 9;
    resign(&renumbered.to_bytes());
    assert!(refused(&j).to_string().contains("published as 2"), "{}", refused(&j));
    restore();

    // nothing of it touched the release in use; the good release then installs
    assert_eq!(store.current(), Some(1));
    let both = [other, key.public()];
    assert_eq!(check(&repo, &store, &judge(&both, Some(1))).unwrap(), Some(2));
}

/// A release signed with a new key is accepted while both keys are trusted (rotation).
#[test]
fn keys_rotate_with_two_trusted() {
    let d = Dir::new("rotate");
    let db = database(&d.0);
    let repo = d.0.join("repo");
    let (old, new) = (SecretKey::generate().unwrap(), SecretKey::generate().unwrap());
    let both = [old.public(), new.public()];
    let store = Store::open(&d.0.join("node")).unwrap();
    publish(&db, &repo, &old);
    assert_eq!(check(&repo, &store, &judge(&both, None)).unwrap(), Some(1));
    publish(&db, &repo, &new);
    assert_eq!(check(&repo, &store, &judge(&both, Some(1))).unwrap(), Some(2));
    publish(&db, &repo, &old);
    let only_new = [new.public()];
    assert!(matches!(check(&repo, &store, &judge(&only_new, Some(2))), Err(Refusal::Signature(_))));
}

/// A database that does not load is never published, and nothing becomes visible.
#[test]
fn a_broken_database_is_not_published() {
    let d = Dir::new("broken");
    let db = database(&d.0);
    std::fs::write(db.join("bad.ndb"), "Broken:0:*:zz-not-hex\n").unwrap();
    let repo = d.0.join("repo");
    let p = Publish { db: &db, repo: &repo, expires: Duration::from_secs(3600), now: NOW };
    let err = release::publish(&p, &SecretKey::generate().unwrap()).unwrap_err();
    assert!(err.to_string().contains("does not load"), "{err}");
    assert!(!repo.join("latest").exists());
}

/// The manifest's signature is minisign's: the `minisign` tool verifies it, and a key pair
/// made by `minisign -G -W` signs releases this code accepts.
#[test]
fn the_minisign_tool_agrees() {
    let d = Dir::new("minisign");
    let db = database(&d.0);
    let repo = d.0.join("repo");
    let key = SecretKey::generate().unwrap();
    publish(&db, &repo, &key);
    let manifest = repo.join(release::manifest_path(1));
    let out = std::process::Command::new("minisign")
        .args(["-V", "-m"])
        .arg(&manifest)
        .args(["-P", &key.public().to_base64()])
        .output()
        .expect("minisign (scripts/test.sh installs it)");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    let (sk, pk) = (d.0.join("tool.key"), d.0.join("tool.pub"));
    let out =
        std::process::Command::new("minisign").args(["-G", "-W", "-s"]).arg(&sk).arg("-p").arg(&pk).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tool_key = SecretKey::parse(&std::fs::read_to_string(&sk).unwrap()).unwrap();
    let tool_pub = PublicKey::parse(&std::fs::read_to_string(&pk).unwrap()).unwrap();
    assert_eq!(tool_key.public(), tool_pub);
    publish(&db, &repo, &tool_key);
    let store = Store::open(&d.0.join("node")).unwrap();
    assert_eq!(check(&repo, &store, &judge(&[tool_pub], Some(1))).unwrap(), Some(2));
}

/// A payload damaged in the publishing directory is written again by the next publish, not
/// listed as it is in every release to come.
#[test]
fn publishing_repairs_a_damaged_payload() {
    let d = Dir::new("repair");
    let db = database(&d.0);
    let repo = d.0.join("repo");
    let key = SecretKey::generate().unwrap();
    let m = publish(&db, &repo, &key);
    let hdb = m.payloads.iter().find(|p| p.name == "local.hdb").unwrap();
    let path = repo.join(release::payload_path(&hdb.sha256));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    publish(&db, &repo, &key);
    let store = Store::open(&d.0.join("node")).unwrap();
    assert_eq!(check(&repo, &store, &judge(&[key.public()], None)).unwrap(), Some(2));
}

/// A database directory as freshclam leaves it — a `.cvd` container beside the operator's own
/// file — is published and installed; a container whose header MD5 does not match its
/// content does not load, so it is never published.
#[test]
fn cvd_containers_are_published_and_checked() {
    use md5::{Digest, Md5};
    let d = Dir::new("cvd");
    let db = database(&d.0);
    let cvd = |ndb: &str| {
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(ndb.len() as u64);
        h.set_cksum();
        tar.append_data(&mut h, "daily.ndb", ndb.as_bytes()).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &tar.into_inner().unwrap()).unwrap();
        let payload = gz.finish().unwrap();
        let md5: String = Md5::digest(&payload).iter().map(|b| format!("{b:02x}")).collect();
        let mut header = format!("ClamAV-VDB:02 Dec 2026:27500:1:90:{md5}:sig:builder:1796200000").into_bytes();
        header.resize(512, b' ');
        [header, payload].concat()
    };
    std::fs::write(db.join("daily.cvd"), cvd("Daily.Marker:0:*:4441494c592d4d41524b4552\n")).unwrap();
    let repo = d.0.join("repo");
    let key = SecretKey::generate().unwrap();
    let m = publish(&db, &repo, &key);
    assert!(m.payloads.iter().any(|p| p.name == "daily.cvd"), "{:?}", m.payloads);
    let store = Store::open(&d.0.join("node")).unwrap();
    assert_eq!(check(&repo, &store, &judge(&[key.public()], None)).unwrap(), Some(1));
    let (loaded, _) = store.load(&[key.public()], Limits::default(), Default::default());
    let engine = scan::Engine::new(loaded.unwrap().signatures, Limits::default());
    assert!(engine.scan_bytes("x", b"a DAILY-MARKER b").verdict().is_infected());

    let mut damaged = cvd("Daily.Marker:0:*:4441494c592d4d41524b4552\n");
    let n = damaged.len();
    damaged[n - 10] ^= 1;
    std::fs::write(db.join("daily.cvd"), damaged).unwrap();
    let p = Publish { db: &db, repo: &repo, expires: Duration::from_secs(3600), now: NOW };
    let err = release::publish(&p, &key).unwrap_err();
    assert!(err.to_string().contains("does not load") && err.to_string().contains("daily.cvd"), "{err}");
    assert_eq!(std::fs::read_to_string(repo.join("latest")).unwrap().trim(), "1");
}
