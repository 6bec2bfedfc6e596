//! The crates' layers (docs/architecture.md): read from `cargo metadata`, every dependency on
//! another crate of the workspace points to a lower layer, the two stages never name each other,
//! the operator plane names no stage, `anyhow` is only in the binary (and the test kit), and
//! every crate inherits the workspace's `rust-version`.

use std::collections::HashMap;
use std::process::Command;

/// Layer of each workspace crate; `None`: test helpers, never a normal dependency.
fn layer(name: &str) -> Option<u8> {
    Some(match name {
        "mxshield-confread" | "mxshield-mime" | "mxshield-smtp" | "mxshield-spool" | "mxshield-store"
        | "mxshield-rating" => 0,
        "mxshield-scan" | "mxshield-contracts" | "mxshield-msglog" => 1,
        "mxshield-filter" | "mxshield-sigupdate" | "mxshield-bulk" => 2,
        "mxshield-inbound" | "mxshield-delivery" => 3,
        "mxshield-operator" => 4,
        "mxshield" => 5,
        "mxshield-testkit" => return None,
        other => panic!("crate {other} has no layer: add it to docs/architecture.md and here"),
    })
}

#[test]
fn dependencies_point_down_only() {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let wrong = violations(&meta);
    assert!(wrong.is_empty(), "dependencies against the layers:\n{}", wrong.join("\n"));
}

/// What in `cargo metadata` output goes against the layers.
fn violations(meta: &serde_json::Value) -> Vec<String> {
    let packages = meta["packages"].as_array().unwrap();
    let ours: HashMap<&str, Option<u8>> =
        packages.iter().map(|p| p["name"].as_str().unwrap()).map(|n| (n, layer(n))).collect();
    let mut wrong = Vec::new();
    for p in packages {
        let name = p["name"].as_str().unwrap();
        if p["rust_version"].is_null() {
            wrong.push(format!("{name}: no rust-version (inherit the workspace's)"));
        }
        for d in p["dependencies"].as_array().unwrap() {
            let dep = d["name"].as_str().unwrap();
            let normal = d["kind"].is_null();
            if dep == "anyhow" && normal && !matches!(name, "mxshield" | "mxshield-testkit") {
                wrong.push(format!("{name} → anyhow: typed errors in libraries"));
            }
            let Some(&dep_layer) = ours.get(dep) else { continue };
            if !normal {
                continue;
            }
            match (ours[name], dep_layer) {
                (_, None) => wrong.push(format!("{name} → {dep}: test helpers are dev-dependencies only")),
                (Some(a), Some(b)) if b >= a => wrong.push(format!("{name} (layer {a}) → {dep} (layer {b})")),
                _ => {}
            }
            let stages = ["mxshield-inbound", "mxshield-delivery", "mxshield-filter"];
            if name == "mxshield-operator" && stages.contains(&dep) {
                wrong.push(format!("{name} → {dep}: the operator plane names no stage"));
            }
        }
    }
    wrong
}

/// The check can fail: made-up metadata with an upward, a sideways and a test-helper
/// dependency, `anyhow` in a library and a missing rust-version is caught on every count.
#[test]
fn wrong_dependencies_are_caught() {
    let package = |name: &str, deps: &[(&str, Option<&str>)]| {
        serde_json::json!({
            "name": name,
            "rust_version": if name == "mxshield-smtp" { serde_json::Value::Null } else { "1.95".into() },
            "dependencies": deps.iter().map(|(d, k)| serde_json::json!({"name": d, "kind": k})).collect::<Vec<_>>(),
        })
    };
    let meta = serde_json::json!({ "packages": [
        package("mxshield-spool", &[("mxshield-inbound", None)]),
        package("mxshield-inbound", &[("mxshield-delivery", None), ("mxshield-testkit", Some("dev"))]),
        package("mxshield-delivery", &[("mxshield-testkit", None)]),
        package("mxshield-operator", &[("anyhow", None)]),
        package("mxshield-smtp", &[]),
        package("mxshield-testkit", &[]),
    ]});
    let wrong = violations(&meta);
    for expected in [
        "mxshield-spool (layer 0) → mxshield-inbound (layer 3)",
        "mxshield-inbound (layer 3) → mxshield-delivery (layer 3)",
        "mxshield-delivery → mxshield-testkit",
        "mxshield-operator → anyhow",
        "mxshield-smtp: no rust-version",
    ] {
        assert!(wrong.iter().any(|w| w.starts_with(expected)), "{expected} not caught: {wrong:#?}");
    }
    assert_eq!(wrong.len(), 5, "{wrong:#?}");
}
