use super::*;

fn temp_spool(name: &str) -> Spool {
    let dir = std::env::temp_dir().join(format!("mxshield-spool-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    Spool::open(dir).unwrap()
}

fn envelope() -> Envelope {
    Envelope {
        sender: "a@remote.test".into(),
        recipients: vec!["alice@acme.example".into(), "bob@acme.example".into()],
        received_at: 1_700_000_000,
        attrs: vec![("contract".into(), "acme".into())],
    }
}

#[test]
fn write_commit_read_back() {
    let spool = temp_spool("rw");
    let mut w = spool.create().unwrap();
    w.write(b"Subject: hi\r\n\r\n").unwrap();
    w.write(b"body\r\n").unwrap();
    let id = w.commit(&envelope()).unwrap();
    let (env, data) = spool.read_data(&id).unwrap();
    assert_eq!(env, envelope());
    assert_eq!(data, b"Subject: hi\r\n\r\nbody\r\n");
    let found = spool.recover().unwrap();
    assert!(matches!(&found[..], [Recovered::Ok { id: got, .. }] if *got == id));
}

#[test]
fn uncommitted_writes_vanish() {
    let spool = temp_spool("drop");
    let mut w = spool.create().unwrap();
    w.write(b"partial").unwrap();
    drop(w);
    assert!(spool.list().unwrap().is_empty());
    assert_eq!(fs::read_dir(spool.root().join("tmp")).unwrap().count(), 0);
}

#[test]
fn damaged_files_move_to_corrupt() {
    let spool = temp_spool("corrupt");
    let mut ids = Vec::new();
    for _ in 0..3 {
        let mut w = spool.create().unwrap();
        w.write(&vec![b'x'; 10_000]).unwrap();
        ids.push(w.commit(&envelope()).unwrap());
    }
    // flip one data byte in the first, truncate the second, leave the third
    let p0 = spool.root().join("queue").join(format!("{}.msg", ids[0]));
    let mut bytes = fs::read(&p0).unwrap();
    bytes[500] ^= 1;
    fs::write(&p0, bytes).unwrap();
    let p1 = spool.root().join("queue").join(format!("{}.msg", ids[1]));
    let bytes = fs::read(&p1).unwrap();
    fs::write(&p1, &bytes[..bytes.len() - 30]).unwrap();
    let found = spool.recover().unwrap();
    let corrupt = found.iter().filter(|r| matches!(r, Recovered::Corrupt { .. })).count();
    assert_eq!(corrupt, 2);
    assert_eq!(spool.list().unwrap(), vec![ids[2].clone()]);
    assert!(spool.root().join("corrupt").join(format!("{}.msg", ids[0])).exists());
}

#[test]
fn status_roundtrip_and_damage() {
    let spool = temp_spool("status");
    let mut w = spool.create().unwrap();
    w.write(b"x\r\n").unwrap();
    let id = w.commit(&envelope()).unwrap();
    let mut st = spool.read_status(&id, 2).unwrap();
    assert_eq!(st, Status::new(2));
    st.attempts = 3;
    st.next_attempt = 42;
    st.rcpts[0].state = RcptState::Delivered;
    st.rcpts[1] = RcptStatus {
        state: RcptState::Deferred,
        last_error: "451 4.3.0\tbusy\n".into(),
        remote: "127.0.0.1:2600".into(),
    };
    spool.write_status(&id, &st).unwrap();
    let back = spool.read_status(&id, 2).unwrap();
    assert_eq!(back.rcpts[1].last_error, "451 4.3.0 busy ");
    assert_eq!(back.attempts, 3);
    let mut bytes = st.encode();
    bytes[15] ^= 0x20;
    assert!(Status::decode(&bytes).is_err());
    assert!(spool.remove(&id).unwrap());
    assert!(!spool.remove(&id).unwrap());
}

#[test]
fn ids_are_unique_and_safe() {
    let a = QueueId::generate();
    let b = QueueId::generate();
    assert_ne!(a, b);
    assert!(QueueId::parse("../../etc/passwd").is_err());
    assert_eq!(QueueId::parse(a.as_str()).unwrap(), a);
}

#[test]
fn replaced_data_keeps_the_id_and_passes_recovery() {
    let spool = temp_spool("replace");
    let mut w = spool.create().unwrap();
    w.write(b"Subject: original with a long body\r\n\r\nvirus virus virus\r\n").unwrap();
    let id = w.id().clone();
    w.replace_data(b"Subject: cleaned\r\n\r\nok\r\n").unwrap();
    assert_eq!(w.read_back().unwrap(), b"Subject: cleaned\r\n\r\nok\r\n");
    assert_eq!(w.commit(&envelope()).unwrap(), id);
    assert_eq!(spool.read_data(&id).unwrap().1, b"Subject: cleaned\r\n\r\nok\r\n");
    assert!(matches!(&spool.recover().unwrap()[..], [Recovered::Ok { .. }]));
}

/// An envelope the reader would refuse (over 16 MiB) is refused at commit, before any `250`,
/// instead of being committed and retried for ever as "bad envelope record" (issue 8.13).
#[test]
fn an_envelope_too_large_to_read_back_is_never_committed() {
    let spool = temp_spool("big-envelope");
    let mut w = spool.create().unwrap();
    w.write(b"Subject: hi\r\n\r\nbody\r\n").unwrap();
    let mut env = envelope();
    env.attrs.push(("prepend".into(), "x".repeat(17 * 1024 * 1024)));
    let err = w.commit(&env).unwrap_err();
    assert!(err.to_string().contains("larger than a spool file may hold"), "{err}");
    assert!(spool.list().unwrap().is_empty());
    assert_eq!(fs::read_dir(spool.root().join("tmp")).unwrap().count(), 0);
}

/// One flipped bit in a status file must not set the intact message aside: it is recovered
/// with every recipient pending and the damaged status kept in `corrupt/` (issue 8.14).
#[test]
fn a_damaged_status_file_keeps_the_message_deliverable() {
    let spool = temp_spool("status-flip");
    let mut w = spool.create().unwrap();
    w.write(b"Subject: hi\r\n\r\nbody\r\n").unwrap();
    let id = w.commit(&envelope()).unwrap();
    let mut st = Status::new(2);
    st.rcpts[0].state = RcptState::Delivered;
    st.attempts = 2;
    spool.write_status(&id, &st).unwrap();
    let path = spool.root().join("queue").join(format!("{id}.st"));
    let mut bytes = fs::read(&path).unwrap();
    bytes[10] ^= 0x01;
    fs::write(&path, bytes).unwrap();
    let found = spool.recover().unwrap();
    let [Recovered::StatusReset { id: got, status, why, .. }] = &found[..] else { panic!("{found:?}") };
    assert_eq!(*got, id);
    assert_eq!(*status, Status::new(2), "every recipient pending again");
    assert!(why.contains("damaged status file kept as"), "{why}");
    assert_eq!(spool.list().unwrap(), vec![id.clone()]);
    assert!(!path.exists());
    let kept = fs::read_dir(spool.root().join("corrupt")).unwrap().count();
    assert_eq!(kept, 1);
    // the next start finds an ordinary message
    assert!(matches!(&spool.recover().unwrap()[..], [Recovered::Ok { .. }]));
}

fn warning_envelope(to: &str) -> Envelope {
    Envelope { sender: String::new(), recipients: vec![to.into()], received_at: 1_700_000_000, attrs: vec![] }
}

#[test]
fn a_message_and_its_companions_commit_together() {
    let spool = temp_spool("group");
    let mut w = spool.create().unwrap();
    w.write(b"Subject: main\r\n\r\nx\r\n").unwrap();
    let mut companions = Vec::new();
    for to in ["alice@acme.example", "bob@acme.example"] {
        let mut c = spool.create().unwrap();
        c.write(b"Subject: warning\r\n\r\ny\r\n").unwrap();
        companions.push((c, warning_envelope(to)));
    }
    let (id, ids) = w.commit_group(&envelope(), companions).unwrap();
    assert_eq!(ids.len(), 2);
    let mut listed = spool.list().unwrap();
    listed.sort();
    let mut all = vec![id, ids[0].clone(), ids[1].clone()];
    all.sort();
    assert_eq!(listed, all);
    assert_eq!(fs::read_dir(spool.root().join("tmp")).unwrap().count(), 0);
}

/// The states a crash can leave between the companions' sealing and their move into the
/// queue: recovery finishes the group if its message was committed and removes it otherwise
/// — never warnings without their message (issue 8.17).
#[test]
fn recovery_finishes_or_drops_an_interrupted_group() {
    let spool = temp_spool("group-crash");
    let sealed_companion = |main: &QueueId| {
        let mut c = spool.create().unwrap();
        c.write(b"Subject: warning\r\n\r\ny\r\n").unwrap();
        c.seal(&warning_envelope("alice@acme.example")).unwrap();
        let held = c.tmp.with_file_name(format!("{}.of-{main}", c.id));
        fs::rename(&c.tmp, &held).unwrap();
        c.done = true;
        c.id.clone()
    };
    // crash after the message's commit, before its companion moved: finished
    let mut w = spool.create().unwrap();
    w.write(b"Subject: committed\r\n\r\nx\r\n").unwrap();
    let main = w.id().clone();
    let finished = sealed_companion(&main);
    w.commit(&envelope()).unwrap();
    // crash before the message's commit: its companion goes with it
    let never = QueueId::generate();
    let dropped = sealed_companion(&never);
    let found = spool.recover().unwrap();
    let ids: Vec<QueueId> = found
        .iter()
        .map(|r| match r {
            Recovered::Ok { id, .. } => id.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(ids.contains(&main) && ids.contains(&finished), "{ids:?}");
    assert!(!ids.contains(&dropped));
    assert_eq!(fs::read_dir(spool.root().join("tmp")).unwrap().count(), 0);
}

/// Queue ids carry the node that made them, so ids from several nodes never collide in a shared
/// message log; ids of earlier versions (16 digits) are still read.
#[test]
fn queue_ids_carry_their_node() {
    let spool = temp_spool("node").with_node(0x1a2b);
    let w = spool.create().unwrap();
    let id = w.id().to_string();
    assert_eq!(id.len(), 20);
    assert_eq!(&id[13..17], "1A2B");
    assert_eq!(QueueId::parse(&id).unwrap().to_string(), id);
    assert!(QueueId::parse("0640F3A2B1C4D001").is_ok());
    assert!(QueueId::parse("0640F3A2B1C4D00").is_err());
}

/// Concurrent commits share directory syncs (group commit) and every one of them is in the
/// queue when its commit returns.
#[test]
fn concurrent_commits_share_directory_syncs() {
    let spool = temp_spool("group");
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let spool = spool.clone();
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                for _ in 0..50 {
                    let mut w = spool.create().unwrap();
                    w.write(b"Subject: x\r\n\r\nhello\r\n").unwrap();
                    let id = w.commit(&envelope()).unwrap();
                    // visible (and synced) before commit returned
                    assert!(spool.contains(&id));
                    ids.push(id);
                }
                ids
            })
        })
        .collect();
    let ids: Vec<QueueId> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert_eq!(ids.len(), 400);
    let state = spool.dir_sync.state.lock().unwrap();
    assert_eq!((state.issued, state.covered, state.running), (400, 400, false));
    println!("400 commits from 8 threads: {} directory syncs", state.runs);
    assert!(state.runs <= 400);
    drop(state);
    let _ = fs::remove_dir_all(spool.root());
}

#[test]
fn a_recent_message_is_served_from_memory_as_it_is_in_its_file() {
    let spool = temp_spool("recent");
    let mut w = spool.create().unwrap();
    w.write(b"Subject: first\r\n\r\nbody\r\n").unwrap();
    // a rewritten message: the copy follows the replacement, as the file does
    w.replace_data(b"Subject: rewritten\r\n\r\nclean\r\n").unwrap();
    assert_eq!(w.read_back().unwrap(), b"Subject: rewritten\r\n\r\nclean\r\n");
    let id = w.commit(&envelope()).unwrap();
    let kept = spool.recent(&id).expect("kept in memory");
    let (env, data) = spool.read_data(&id).unwrap();
    assert_eq!((&kept.envelope, &kept.data), (&env, &data));
    // removed here: gone from memory too
    assert!(spool.remove(&id).unwrap());
    assert!(spool.recent(&id).is_none());
    // removed by another process (`mxshield queue delete`): not served from memory either
    let mut w = spool.create().unwrap();
    w.write(b"Subject: two\r\n\r\n").unwrap();
    let id = w.commit(&envelope()).unwrap();
    fs::remove_file(spool.root().join("queue").join(format!("{id}.msg"))).unwrap();
    assert!(spool.recent(&id).is_none());
}

#[test]
fn only_small_messages_are_kept_and_memory_is_bounded() {
    let spool = temp_spool("recent-bound");
    let mut w = spool.create().unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..5 {
        w.write(&chunk).unwrap();
    }
    // larger than recent::MESSAGE_MAX: read back from the file, not kept
    assert_eq!(w.read_back().unwrap().len(), 5 * chunk.len());
    let big = w.commit(&envelope()).unwrap();
    assert!(spool.recent(&big).is_none());
    // many small ones: the oldest give way, the total stays under the bound
    let mut ids = Vec::new();
    for _ in 0..80 {
        let mut w = spool.create().unwrap();
        for _ in 0..4 {
            w.write(&chunk).unwrap();
        }
        ids.push(w.commit(&envelope()).unwrap());
    }
    assert!(spool.recent.bytes() <= 16 * 1024 * 1024);
    assert!(spool.recent(&ids[0]).is_none(), "the oldest was dropped");
    assert!(spool.recent(ids.last().unwrap()).is_some(), "the newest is kept");
}
