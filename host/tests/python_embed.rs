//! The plugin in a host nobody here compiled: `examples/python/embed.py`, a wasmtime-py
//! host (pinned in `examples/python/requirements.txt`, installed by `.ci/run` into a
//! virtual environment) that provides every import from Python, runs the plugin that
//! `request-access export-plugin` writes, and must answer what a user relies on.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// `examples/python`, in the workspace.
fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python")
}

/// The version `requirements.txt` pins.
fn pinned_wasmtime() -> String {
    let requirements = std::fs::read_to_string(example_dir().join("requirements.txt")).unwrap();
    requirements
        .lines()
        .find_map(|l| l.trim().strip_prefix("wasmtime=="))
        .expect("requirements.txt pins wasmtime==VERSION")
        .trim()
        .to_string()
}

/// The virtual environment's Python, where `.ci/run` installs wasmtime-py:
/// `REQUEST_ACCESS_WASMTIME_PY_DIR`, else `~/.cache/request-access/wasmtime-py`. `None`
/// (the test skipped) where it, or its pinned wasmtime package, is missing, unless
/// `REQUEST_ACCESS_REQUIRE_TOOLS` is set.
fn python() -> Option<PathBuf> {
    let venv = request_access_testkit::installed_tool(
        "REQUEST_ACCESS_WASMTIME_PY_DIR",
        "wasmtime-py",
        "bin/python",
    )?;
    let python = venv.join("bin/python");
    let pinned = pinned_wasmtime();
    let found = Command::new(&python)
        .args([
            "-c",
            "import importlib.metadata as m, wasmtime.component; print(m.version('wasmtime'))",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if found.as_deref() == Some(pinned.as_str()) {
        return Some(python);
    }
    let why = match found {
        Some(other) => format!("has wasmtime {other}, not the pinned {pinned}"),
        None => "has no wasmtime package".to_string(),
    };
    if std::env::var_os("REQUEST_ACCESS_REQUIRE_TOOLS").is_some() {
        panic!(
            "wasmtime-py is required (REQUEST_ACCESS_REQUIRE_TOOLS), but {} {why}",
            venv.display()
        );
    }
    eprintln!(
        "skipped: {} {why} (.ci/run installs examples/python/requirements.txt)",
        venv.display()
    );
    None
}

/// `python ARGS` in `examples/python`, leaving no bytecode behind in the source tree.
fn run_python(python: &Path, args: &[&std::ffi::OsStr]) -> Output {
    Command::new(python)
        .args(args)
        .current_dir(example_dir())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python runs")
}

/// The plugin, as a user gets it: `request-access export-plugin FILE`.
fn export_plugin(dir: &Path) -> PathBuf {
    let plugin = dir.join("request-access-plugin.wasm");
    let out = Command::new(env!("CARGO_BIN_EXE_request-access"))
        .arg("export-plugin")
        .arg(&plugin)
        .env_remove("REQUEST_ACCESS_CONFIG")
        .env_remove("REQUEST_ACCESS_DATA")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "export-plugin: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(&std::fs::read(&plugin).unwrap()[..4], b"\0asm");
    plugin
}

/// The JSON line of the step `name`.
fn step<'a>(lines: &'a [Value], name: &str, stdout: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["step"] == name)
        .unwrap_or_else(|| panic!("no step {name} in:\n{stdout}"))
}

#[test]
fn the_python_example_host_runs_the_exported_plugin() {
    let Some(python) = python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let plugin = export_plugin(dir.path());
    let out = run_python(&python, &["embed.py".as_ref(), plugin.as_os_str()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "embed.py: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();

    // A number of the group's pool, and a code of the configured length (6 digits).
    let created = &step(&lines, "create", &stdout)["ok"];
    let number = created["access-number"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"));
    let pool: Vec<String> = (0..5).map(|i| format!("+1800555010{i}")).collect();
    assert!(pool.iter().any(|n| n == number), "{number} not in {pool:?}");
    let code = created["access-code"].as_str().unwrap();
    assert!(
        code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
        "{code}"
    );
    assert_eq!(created["expiration-time"], 30, "{created}");
    // The call with that number and code is the service's; the same call again, no one's.
    let matched = &step(&lines, "match", &stdout)["ok"];
    assert_eq!(matched["service-id"], "demo-service", "{matched}");
    assert_eq!(matched["resource-group"], "DNIS", "{matched}");
    let again = step(&lines, "match-again", &stdout);
    assert_eq!(again["err"]["tag"], "no-match", "{again}");
    // Each error names its cause.
    let unknown = &step(&lines, "unknown-group", &stdout)["err"];
    assert_eq!(unknown["tag"], "unknown-resource-group", "{unknown}");
    assert_eq!(unknown["payload"], "NO-SUCH-GROUP", "{unknown}");
    let inactive = &step(&lines, "inactive-service", &stdout)["err"];
    assert_eq!(inactive["tag"], "service-not-active", "{inactive}");
    assert_eq!(inactive["payload"], "retired-service", "{inactive}");
    // The host's clock expires a reservation nobody called.
    let short = &step(&lines, "create-short", &stdout)["ok"];
    assert_eq!(short["expiration-time"], 10, "{short}");
    assert_ne!(
        short["access-number"], number,
        "round-robin lends the next number"
    );
    let expired = step(&lines, "match-expired", &stdout);
    assert_eq!(expired["err"]["tag"], "no-match", "{expired}");
    let status = &step(&lines, "pool-status", &stdout)["ok"];
    assert_eq!(
        (&status["size"], &status["live"], &status["free"]),
        (&5.into(), &0.into(), &5.into()),
        "{status}"
    );
    // What the plugin told the host with its commits, never the access code.
    let events: Vec<&Value> = lines.iter().filter(|l| l.get("event").is_some()).collect();
    for kind in ["created", "matched", "expired"] {
        assert!(
            events.iter().any(|e| e["event"] == kind),
            "no {kind} event: {events:?}"
        );
    }
    assert!(
        events.iter().all(|e| !e.to_string().contains(code)),
        "an event carries the code: {events:?}"
    );
}

#[test]
fn the_python_example_state_keeps_the_reservation_state_contract() {
    let Some(python) = python() else {
        return;
    };
    let out = run_python(
        &python,
        &["-m".as_ref(), "unittest".as_ref(), "test_embed".as_ref()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
