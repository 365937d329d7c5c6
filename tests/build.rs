//! Builds the deliberately broken plugin (`broken-plugin/`) for `wasm32-wasip2` into a
//! target directory of its own under `OUT_DIR`, for the sandbox tests.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let target_dir = out_dir.join("wasm-target");
    for watched in ["tests/broken-plugin", "wit", "Cargo.lock"] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    let status = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&workspace)
        .args(["build", "--package", "request-access-broken-plugin"])
        .args([
            "--target",
            "wasm32-wasip2",
            "--release",
            "--locked",
            "--target-dir",
        ])
        .arg(&target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .expect("cannot run cargo to build the broken plugin");
    assert!(status.success(), "building the broken plugin failed");
    let built = target_dir.join("wasm32-wasip2/release/request_access_broken_plugin.wasm");
    std::fs::copy(&built, out_dir.join("broken_plugin.wasm"))
        .unwrap_or_else(|e| panic!("cannot copy {}: {e}", built.display()));
}
