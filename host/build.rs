//! Builds the wasm artifacts the host embeds, so that a plain `cargo build` or
//! `cargo test` is self-contained:
//! - `request_access_guest.wasm`: the plugin (`guest/`);
//! - `request-access-standalone.wasm`: the plugin composed with the WASI-only adapter
//!   (`adapter/`), for generic hosts such as `wasmtime run`;
//! - `request-access.wit.wasm`: the contract (`wit/`) as a binary WIT package, and its
//!   name in `REQUEST_ACCESS_WIT_PACKAGE` (`contact-center:request-access@0.1.1`).

use std::path::Path;

use request_access_build_support::{build_wasm, out_dir, rerun_if_changed};
use wac_graph::{CompositionGraph, EncodeOptions, types::Package};

fn main() {
    rerun_if_changed(&[
        "guest/src",
        "guest/Cargo.toml",
        "adapter/src",
        "adapter/Cargo.toml",
        "config/src",
        "config/Cargo.toml",
        "config/default-config.toml",
        "state/src",
        "state/Cargo.toml",
        "build-support/src",
        "wit",
        "Cargo.lock",
        "Cargo.toml",
    ]);
    let out_dir = out_dir();
    let target_dir = out_dir.join("wasm-target");

    // Two runs: built together, cargo would unify the guest's features and link its
    // component shell into the adapter as well. The guest is read before the second
    // run, which rebuilds it (without the shell) as the adapter's dependency.
    let built = build_wasm(&target_dir, "request-access-guest", &["--lib"]);
    let guest = read(&built.join("request_access_guest.wasm"));
    build_wasm(&target_dir, "request-access-adapter", &["--lib"]);
    let adapter = read(&built.join("request_access_adapter.wasm"));
    std::fs::write(out_dir.join("request_access_guest.wasm"), &guest).unwrap();
    std::fs::write(
        out_dir.join("request-access-standalone.wasm"),
        compose(guest, adapter),
    )
    .unwrap();
    let (name, package) = wit_package(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit"));
    std::fs::write(out_dir.join("request-access.wit.wasm"), package).unwrap();
    println!("cargo:rustc-env=REQUEST_ACCESS_WIT_PACKAGE={name}");
}

/// The package in `dir` encoded as a WIT package, and its name with its version.
fn wit_package(dir: &Path) -> (String, Vec<u8>) {
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_dir(dir)
        .unwrap_or_else(|e| panic!("{} does not parse: {e:?}", dir.display()));
    let name = resolve.packages[package].name.to_string();
    let bytes = wit_component::encode(&resolve, package).expect("the WIT package encodes");
    (name, bytes)
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
