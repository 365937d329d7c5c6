//! Builds the wasm artifacts the host embeds, so that a plain `cargo build` or
//! `cargo test` is self-contained:
//! - `request_access_guest.wasm`: the plugin (`guest/`);
//! - `request-access-standalone.wasm`: the plugin composed with the WASI-only adapter
//!   (`adapter/`), for generic hosts such as `wasmtime run`.
//!
//! Both crates are built for `wasm32-wasip2` in one cargo run, into a target directory
//! of their own under `OUT_DIR` (sharing the outer one deadlocks on its build lock).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use wac_graph::{CompositionGraph, EncodeOptions, types::Package};

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let target_dir = out_dir.join("wasm-target");

    for watched in [
        "guest/src",
        "guest/Cargo.toml",
        "adapter/src",
        "adapter/Cargo.toml",
        "config/src",
        "config/Cargo.toml",
        "config/default-config.toml",
        "wit",
        "Cargo.lock",
        "Cargo.toml",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }

    // Two runs: built together, cargo would unify the guest's features and link its
    // component shell into the adapter as well. The guest is read before the second
    // run, which rebuilds it (without the shell) as the adapter's dependency.
    let built = target_dir.join("wasm32-wasip2/release");
    build_wasm(&workspace, &target_dir, "request-access-guest");
    let guest = read(&built.join("request_access_guest.wasm"));
    build_wasm(&workspace, &target_dir, "request-access-adapter");
    let adapter = read(&built.join("request_access_adapter.wasm"));
    std::fs::write(out_dir.join("request_access_guest.wasm"), &guest).unwrap();
    std::fs::write(
        out_dir.join("request-access-standalone.wasm"),
        compose(guest, adapter),
    )
    .unwrap();
}

fn build_wasm(workspace: &Path, target_dir: &Path, package: &str) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace)
        .args(["build", "--package", package, "--lib"])
        .args(["--target", "wasm32-wasip2", "--release", "--locked"])
        .arg("--target-dir")
        .arg(target_dir)
        // Flags meant for the host (coverage, sanitizers, clippy) must not reach the guest.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("cannot run cargo to build the wasm components");
    assert!(
        status.success(),
        "building {package} for wasm32-wasip2 failed (is the target installed? \
         `rustup target add wasm32-wasip2`)"
    );
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Plug the adapter's exports into the guest's imports (what `wac plug` does).
fn compose(guest: Vec<u8>, adapter: Vec<u8>) -> Vec<u8> {
    let mut graph = CompositionGraph::new();
    let guest = Package::from_bytes("request-access:guest", None, guest, graph.types_mut())
        .expect("the guest is a component");
    let adapter = Package::from_bytes("request-access:adapter", None, adapter, graph.types_mut())
        .expect("the adapter is a component");
    let guest = graph.register_package(guest).unwrap();
    let adapter = graph.register_package(adapter).unwrap();
    wac_graph::plug(&mut graph, vec![adapter], guest).expect("the adapter plugs into the guest");
    graph
        .encode(EncodeOptions::default())
        .expect("the composition encodes")
}
