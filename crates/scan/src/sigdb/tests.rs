use super::*;
use md5::{Digest, Md5};

fn load(files: &[(&str, &str)]) -> Result<SigDb, LoadError> {
    let mut db = SigDb::default();
    for (name, text) in files {
        db.load_file(name, text.as_bytes())?;
    }
    db.finish();
    Ok(db)
}

#[test]
fn counts() {
    let db = load(&[
        ("a.hdb", "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n"),
        ("b.hsb", "3395856ce81f2b7382dee72602f798b642f14140:68:Eicar.SHA1\n"),
        ("c.ndb", "Test.Body:0:*:414243??45\nTest.T13:13:*:414243\nTest.EP:9:EP+0:4142\nTest.VI:1:VI:4142\n"),
        ("d.ldb", "Test.Logic;Engine:51-255,Target:0;0&1;414243;444546\nTest.Macro;Target:0;0&1;414243;${1-2}0$\n"),
        ("e.mdb", "512:44d88612fea8a8f36de82e1278abb02f:Sect.One\n*:44d88612fea8a8f36de82e1278abb02f:Sect.Any:73\n"),
        ("e.imp", "98c88d882f01a3f6ac1e5f7dfd761624:39:Imp.One\n"),
        ("e.cdb", "1:2:3\n4:5:6\n"),
        ("f.fp", "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n"),
    ])
    .unwrap();
    assert_eq!((db.stats.md5, db.stats.sha1, db.stats.body, db.stats.logical, db.stats.allow), (1, 1, 2, 1, 1));
    let u = &db.stats.unsupported;
    assert_eq!(u["target type 13"], 1);
    assert_eq!(db.stats.sections, 2);
    assert_eq!(db.stats.imports, 1);
    assert_eq!(u["container metadata (.cdb)"], 2);
    assert_eq!(u["version-information and macro offsets (VI)"], 1);
    assert_eq!(u["logical signature: macros"], 1);
}

#[test]
fn malformed_lines_name_file_and_line() {
    let e = load(&[("x.ndb", "Good:0:*:41424344\nBad:0:*:4142zz\n")]).unwrap_err();
    assert_eq!((e.file.as_str(), e.line), ("x.ndb", 2));
    let e = load(&[("x.hdb", "# comment\n\nnothex:12:Name\n")]).unwrap_err();
    assert_eq!(e.line, 3);
    let e = load(&[("x.ldb", "N;Target:0;0&3;4142\n")]).unwrap_err();
    assert!(e.why.contains("highest sub-signature is 3"), "{e}");
}

#[test]
fn containers_are_read_and_checked() {
    let mut tar = tar::Builder::new(Vec::new());
    let body = b"Cvd.Test:0:*:41424344\n";
    let mut h = tar::Header::new_gnu();
    h.set_size(body.len() as u64);
    h.set_cksum();
    tar.append_data(&mut h, "test.ndb", &body[..]).unwrap();
    let tar = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    let payload = gz.finish().unwrap();
    let md5: String = Md5::digest(&payload).iter().map(|b| format!("{b:02x}")).collect();
    let mut header = format!("ClamAV-VDB:28 Nov 2026:27451:1:90:{md5}:sig:builder:1764300000").into_bytes();
    header.resize(512, b' ');
    let dir = std::env::temp_dir().join(format!("mxshield-cvd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("daily.cvd"), [header.clone(), payload.clone()].concat()).unwrap();
    let db = SigDb::load_dir(&dir).unwrap();
    assert_eq!(db.stats.body, 1);
    assert_eq!(db.version, "daily:27451");
    assert_eq!(db.stats.files, vec!["daily.cvd/test.ndb"]);
    let mut damaged = payload;
    let n = damaged.len();
    damaged[n / 2] ^= 1;
    std::fs::write(dir.join("daily.cvd"), [header, damaged].concat()).unwrap();
    let e = SigDb::load_dir(&dir).unwrap_err();
    assert!(e.why.contains("does not match"), "{e}");
}

/// A signature that uses something not built here is skipped with its file and line; the
/// rest of the file loads.
#[test]
fn skipped_signatures_name_their_place_and_the_rest_loads() {
    let db = load(&[("x.ndb", "Good.One:0:*:41424344454647\nSkip.Me:1:VI:4142434445\n# c\nMacro.Sig:2:$1:cffaedfe\n")])
        .unwrap();
    assert_eq!(db.stats.body, 1);
    let places: Vec<(&str, usize)> = db.stats.skipped.iter().map(|s| (s.file.as_str(), s.line)).collect();
    assert_eq!(places, [("x.ndb", 2), ("x.ndb", 4)]);
    assert!(db.stats.skipped[0].why.contains("VI"), "{:?}", db.stats.skipped);
    assert_eq!(db.stats.skipped_total(), 2);
}
