//! What building the `shmbus` command costs its users: iceoryx2 (a large
//! dependency, used only as one more benchmark transport) is not built unless
//! asked for with the `iceoryx2` feature.

use std::process::Command;

fn normal_deps(features: &[&str]) -> String {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let tree = |offline: bool| {
        Command::new(&cargo)
            .args(["tree", "-p", "shmbus-cli", "--edges", "normal", "--prefix", "none"])
            .args(offline.then_some("--offline"))
            .args(features)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("run cargo tree")
    };
    // Offline first (no network needed once the registry cache has the
    // optional dependencies); on a fresh machine whose cache lacks them
    // (the default build never downloads iceoryx2), let cargo fetch them.
    let mut out = tree(true);
    if !out.status.success() {
        out = tree(false);
    }
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_cli_does_not_build_iceoryx2_by_default() {
    let tree = normal_deps(&[]);
    assert!(tree.lines().any(|l| l.starts_with("shmbus-bench ")), "the CLI runs the harness:\n{tree}");
    assert!(!tree.lines().any(|l| l.starts_with("iceoryx2")), "iceoryx2 in the default build:\n{tree}");
    let with = normal_deps(&["--features", "iceoryx2"]);
    assert!(with.lines().any(|l| l.starts_with("iceoryx2 ")), "--features iceoryx2 builds it:\n{with}");
}
