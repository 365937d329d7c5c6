//! Builds the deliberately broken plugin (`broken-plugin/`) for `wasm32-wasip2` into a
//! target directory of its own under `OUT_DIR`, for the sandbox tests, and the plugin
//! as built against the released 0.1.0 contract, for the compatibility tests.

use request_access_build_support::{build_wasm, out_dir, rerun_if_changed};

fn main() {
    rerun_if_changed(&[
        "tests/broken-plugin",
        "guest/src",
        "guest/Cargo.toml",
        "host/tests/released-wit",
        "wit",
        "build-support/src",
        "Cargo.lock",
    ]);
    let out_dir = out_dir();
    let built = build_wasm(
        &out_dir.join("wasm-target"),
        "request-access-broken-plugin",
        &[],
    )
    .join("request_access_broken_plugin.wasm");
    std::fs::copy(&built, out_dir.join("broken_plugin.wasm"))
        .unwrap_or_else(|e| panic!("cannot copy {}: {e}", built.display()));
    let built = build_wasm(
        &out_dir.join("released-wit-target"),
        "request-access-guest",
        &["--features", "released-wit"],
    )
    .join("request_access_guest.wasm");
    std::fs::copy(&built, out_dir.join("released_wit_plugin.wasm"))
        .unwrap_or_else(|e| panic!("cannot copy {}: {e}", built.display()));
}
