//! What the build scripts share: building a workspace crate for `wasm32-wasip2` in a
//! nested cargo run, with the target installed first when rustup can do it.
#![warn(missing_docs)]

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target every component is built for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// The workspace root, from a member's build script.
pub fn workspace() -> PathBuf {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("run by cargo"));
    manifest_dir
        .parent()
        .expect("a member sits one level below the workspace")
        .to_path_buf()
}

/// The build script's output directory.
pub fn out_dir() -> PathBuf {
    PathBuf::from(env::var("OUT_DIR").expect("run by cargo"))
}

/// Rebuild when any of `paths` (relative to the workspace) changes.
pub fn rerun_if_changed(paths: &[&str]) {
    let workspace = workspace();
    for path in paths {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }
}

/// Build `package` in release mode for [`WASM_TARGET`] into `target_dir` (a directory
/// of its own: sharing the outer build's deadlocks on its lock), and answer the
/// directory its artifacts land in.
pub fn build_wasm(target_dir: &Path, package: &str, extra_args: &[&str]) -> PathBuf {
    ensure_wasm_target();
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace())
        .args(["build", "--package", package])
        .args(extra_args)
        .args(["--target", WASM_TARGET, "--release", "--locked"])
        .arg("--target-dir")
        .arg(target_dir)
        // What the outer build sets for itself (coverage, sanitizers, clippy, a target
        // or a target directory) must not reach the nested one.
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
        "building {package} for {WASM_TARGET} failed (is the target installed? \
         `rustup target add {WASM_TARGET}`)"
    );
    target_dir.join(WASM_TARGET).join("release")
}

/// Install [`WASM_TARGET`] for the toolchain in use when it is missing and rustup is
/// there to add it; otherwise leave it to the build to fail with its own message.
fn ensure_wasm_target() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Some(sysroot) = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
    else {
        return;
    };
    if sysroot.join("lib/rustlib").join(WASM_TARGET).is_dir() {
        return;
    }
    // rustup names each toolchain's directory after the toolchain.
    let toolchain = env::var("RUSTUP_TOOLCHAIN").ok().or_else(|| {
        sysroot
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
    });
    let Some(toolchain) = toolchain else { return };
    println!(
        "cargo:warning=the {WASM_TARGET} target is missing: running `rustup target add \
         {WASM_TARGET} --toolchain {toolchain}`"
    );
    let added = Command::new("rustup")
        .args(["target", "add", WASM_TARGET, "--toolchain", &toolchain])
        .status()
        .is_ok_and(|s| s.success());
    if !added {
        println!("cargo:warning=rustup could not add {WASM_TARGET}; the build will fail");
    }
}
