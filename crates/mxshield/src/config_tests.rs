use super::*;

#[test]
fn defaults_without_file() {
    let c = Config::defaults();
    assert_eq!(c.data_dir, PathBuf::from("./mxshield-data"));
    assert_eq!(c.smtp.listen, vec!["127.0.0.1:2525".parse().unwrap()]);
    assert_eq!(c.smtp.max_message_size, 52_428_800);
    assert_eq!(c.smtp.max_recipients, 100);
    assert_eq!(c.delivery.queue_lifetime, Duration::from_secs(86_400));
    assert_eq!(c.contracts.url, "sqlite://./mxshield-data/mxshield.db?mode=rwc");
    assert_eq!(c.node_name, c.smtp.hostname);
    assert_eq!(c.log.message_log, msglog::LogLocation::File("./mxshield-data/messages.db".into()));
}

/// With a shared store, the message log is there too, journaled in data_dir.
#[test]
fn a_shared_store_holds_the_message_log() {
    let c = Config::from_str("node_id = \"mx2\"\n[store]\nurl = \"postgres://mx@db/mx\"\n[log]\njournal_max = 1000\n")
        .unwrap();
    assert_eq!(c.node_name, "mx2");
    assert_eq!(
        c.log.message_log,
        msglog::LogLocation::Shared {
            url: "postgres://mx@db/mx".into(),
            journal: "./mxshield-data/msglog-journal.db".into(),
            journal_max: 1000
        }
    );
    assert_eq!((c.heartbeat, c.down_after), (Duration::from_secs(5), Duration::from_secs(30)));
}

#[test]
fn the_documented_example_is_valid() {
    let c = Config::from_str(include_str!("../../../examples/mxshield.toml")).unwrap();
    assert_eq!(c.smtp.hostname, "mx1.example.net");
    assert_eq!(c.postmaster, "postmaster@mx1.example.net");
    assert_eq!(c.delivery.routes["remote.test"].to_string(), "127.0.0.1:2601");
    assert_eq!(c.log.retention, Duration::from_secs(90 * 86_400));
    assert!(c.warnings.enabled);
}

/// Each bad configuration and the errors (line: key: why) it must produce — all of them.
#[test]
fn bad_configs_report_every_error() {
    let table: &[(&str, &[&str])] = &[
        ("data_dir = 5\n", &["line 1: data_dir: expected a string, found an integer"]),
        ("[smtp]\nlisten = [\"nowhere\"]\n", &["line 2: smtp.listen: \"nowhere\" is not an address:port"]),
        (
            "[smtp]\nmax_recipients = 0\nmax_message_size = -1\nhostnme = \"x\"\n",
            &[
                "line 2: smtp.max_recipients: must be at least 1",
                "line 3: smtp.max_message_size: must not be negative",
                "line 4: smtp.hostnme: unknown key",
            ],
        ),
        ("[delivery]\nqueue_lifetime = \"1 day\"\n", &["line 2: delivery.queue_lifetime: invalid duration unit"]),
        (
            "[delivery.routes]\n\"remote.test\" = \"127.0.0.1:99999\"\n\"bad domain\" = \"x\"\n",
            &[
                "line 2: delivery.routes.remote.test: invalid server \"127.0.0.1:99999\"",
                "line 3: delivery.routes.bad domain: \"bad domain\" is not a domain name",
            ],
        ),
        ("[smtp.tls]\ncert = \"c.pem\"\n", &["line 1: smtp.tls: needs both cert and key"]),
        ("[log]\nlevel = \"loud\"\nformat = \"xml\"\n", &["line 2: log.level", "line 3: log.format"]),
        ("[delivery.dns]\nnameservers = [\"dns.example\"]\n", &["line 2: delivery.dns.nameservers"]),
        ("smtp = 1\n", &["line 1: smtp: expected a table"]),
        (
            "[warnings]\ncharset = \"latin1\"\ntemplates = \"/nonexistent/templates\"\nenabled = \"yes\"\n",
            &[
                "line 2: warnings.charset: \"latin1\" is not \"utf-8\" or \"iso-2022-jp\"",
                "line 3: warnings.templates: \"/nonexistent/templates\" is not a directory",
                "line 4: warnings.enabled: expected true or false",
            ],
        ),
        ("[log]\nretention = \"0s\"\n", &["line 2: log.retention: must be longer than zero"]),
        ("[smtp\n", &["line 1: TOML syntax error"]),
        ("postmaster = \"not an address\"\n", &["line 1: postmaster"]),
        ("[delivery]\nretry_min = \"2h\"\nretry_max = \"1h\"\n", &["line 2: delivery.retry_min: must not be larger"]),
        ("[delivery]\nretry_max = \"1m\"\n", &["line 2: delivery.retry_min: must not be larger"]),
        ("[smtp]\nmax_connections = 5\nreserved_connections = 5\n", &["line 3: smtp.reserved_connections"]),
        (
            "[node]\nid = 70000\nname = \"x\"\n",
            &["line 2: node.id: must be 0 to 65535", "line 3: node.name: unknown key"],
        ),
        (
            "node_id = \"mx 1\"\n[node]\nheartbeat = \"10s\"\ndown_after = \"5s\"\n",
            &[
                "line 1: node_id: must be 1 to 253 letters",
                "line 4: node.down_after: must be longer than node.heartbeat",
            ],
        ),
        (
            "[store]\nurl = \"postgres://db/mx\"\n[log]\nmessage_log = \"x.db\"\n[contracts]\nreload_interval = \"0s\"\n",
            &[
                "line 4: log.message_log: with a shared [store] url the message log is in that database",
                "line 6: contracts.reload_interval: must be longer than zero",
            ],
        ),
        (
            "[signatures]\nsource = \"ftp://x/\"\ntrusted_keys = [\"RWQnot-a-key\"]\ncheck_every = \"0s\"\n",
            &[
                "line 2: signatures.source: \"ftp://x/\": only http://",
                "line 3: signatures.trusted_keys: malformed public key",
                "line 4: signatures.check_every: must be longer than zero",
            ],
        ),
        ("[signatures]\nsource = \"/srv/releases\"\n", &["line 1: signatures.trusted_keys: a source needs"]),
        (
            "colour = \"blue\"\n[smtp]\nmax_errors = \"ten\"\n",
            &["line 1: colour: unknown key", "line 3: smtp.max_errors: expected an integer"],
        ),
    ];
    for (src, expected) in table {
        let issues = Config::from_str(src).expect_err(src).0;
        let got: Vec<String> = issues.iter().map(|i| i.to_string()).collect();
        assert_eq!(got.len(), expected.len(), "config {src:?}: got {got:#?}");
        for e in *expected {
            assert!(got.iter().any(|g| g.contains(e)), "config {src:?}: missing {e:?} in {got:#?}");
        }
    }
}

/// `[conditions]`: a policy per kind, overridden per contract; the probe's and the spam
/// engine's settings; every mistake reported with its key.
#[test]
fn the_conditions_policies_are_per_kind_and_per_contract() {
    use operator::conditions::Policy;
    let c = Config::from_str(
        "[conditions]\nbulk = \"warn\"\nopen_relay = \"defer\"\nnotify = \"ops@example.net\"\nrelay_test_every = \"1d\"\n\
         canary_domain = \"canary.example.net\"\n[conditions.contract.acme]\nopen_relay = \"refuse\"\nbulk = \"observe\"\n\
         [conditions.spam_engine]\nkind = \"rspamd\"\naddress = \"127.0.0.1:11333\"\n",
    )
    .unwrap();
    let s = &c.conditions;
    assert_eq!(s.policy("acme", "open-relay"), Policy::Refuse);
    assert_eq!(s.policy("acme", "bulk"), Policy::Observe);
    assert_eq!(s.policy("beta", "open-relay"), Policy::Defer);
    assert_eq!(s.policy("beta", "bulk"), Policy::Warn);
    assert_eq!(s.policy("beta", "undeliverable"), Policy::Observe, "the default");
    assert_eq!(s.notify.as_deref(), Some("ops@example.net"));
    assert_eq!(s.relay.every, Some(Duration::from_secs(86_400)));
    assert_eq!(s.relay.canary_domain.as_deref(), Some("canary.example.net"));
    let engine = c.spam_engine.expect("an engine");
    assert_eq!((engine.kind, engine.addr.port()), (bulk::spam::EngineKind::Rspamd, 11333));
    let defaults = Config::from_str("").unwrap();
    assert_eq!(defaults.conditions.relay.every, Some(Duration::from_secs(7 * 86_400)), "probed weekly by default");
    assert!(defaults.spam_engine.is_none());
    let bad = Config::from_str(
        "[conditions]\nbulk = \"block\"\nrelay_test_every = \"5m\"\n[conditions.contract.acme]\nspam = \"defer\"\n\
         [conditions.spam_engine]\nkind = \"spamassassin\"\n",
    )
    .unwrap_err()
    .to_string();
    for key in [
        "conditions.bulk",
        "conditions.relay_test_every",
        "conditions.contract.acme.spam",
        "conditions.spam_engine.kind",
        "conditions.spam_engine.address",
    ] {
        assert!(bad.contains(key), "{key}: {bad}");
    }
}

/// `[admin]`: the per-contract metric is on by default and can be switched off; a wrong
/// value is an error with its key.
#[test]
fn the_per_contract_metric_can_be_switched_off() {
    assert!(Config::defaults().admin.metrics_by_contract);
    let c = Config::from_str("[admin]\nmetrics_by_contract = false\n").unwrap();
    assert!(!c.admin.metrics_by_contract);
    let e = Config::from_str("[admin]\nmetrics_by_contract = \"no\"\n").unwrap_err().to_string();
    assert!(e.contains("metrics_by_contract"), "{e}");
}
