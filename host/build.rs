//! Builds the guest component (`guest/`) for `wasm32-wasip2` into its own target
//! directory under `OUT_DIR`, so that a plain `cargo build` or `cargo test` of the host
//! is self-contained. The host embeds the result with `include_bytes!`.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    // A separate target directory: sharing the outer one deadlocks on its build lock.
    let target_dir = out_dir.join("guest-target");

    for watched in [
        "guest/src",
        "guest/Cargo.toml",
        "wit",
        "Cargo.lock",
        "Cargo.toml",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&workspace)
        .args([
            "build",
            "--package",
            "request-access-guest",
            "--lib",
            "--target",
            "wasm32-wasip2",
            "--release",
            "--locked",
            "--target-dir",
        ])
        .arg(&target_dir)
        // Flags meant for the host (coverage, sanitizers, clippy) must not reach the guest.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("cannot run cargo to build the guest component");
    assert!(
        status.success(),
        "building the guest component failed (is the wasm32-wasip2 target installed? \
         `rustup target add wasm32-wasip2`)"
    );
    let built = target_dir.join("wasm32-wasip2/release/request_access_guest.wasm");
    std::fs::copy(&built, out_dir.join("request_access_guest.wasm"))
        .unwrap_or_else(|e| panic!("cannot copy {}: {e}", built.display()));
}
