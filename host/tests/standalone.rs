//! The plugin outside the reference host: the composed standalone component under a
//! WASI-only host (in process, and the real `wasmtime` CLI when installed), and the
//! minimal embedding example.

use std::path::{Path, PathBuf};
use std::process::Command;

use request_access_host::runtime::{PLUGIN_WASM, STANDALONE_WASM};
use request_access_testkit::tool;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

#[path = "../examples/embed.rs"]
mod embed;

mod generic {
    wasmtime::component::bindgen!({ path: "../wit", world: "standalone" });
}
use generic::exports::contact_center::request_access::request_access::{
    CreateRequest, MatchRequest,
};

const CONFIG: &str = r#"
[[resource_group]]
name = "DNIS"
numbers = ["+18005550100..+18005550104"]

[registry]
services = ["s1", "s2"]
"#;

struct Wasi {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Wasi {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// One "invocation": a fresh instance with nothing but WASI and `/state` preopened.
fn invocation(
    engine: &Engine,
    component: &Component,
    state: &Path,
) -> (Store<Wasi>, generic::Standalone) {
    let mut linker = Linker::<Wasi>::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    let ctx = WasiCtxBuilder::new()
        .preopened_dir(state, "/state", FsPerms::ReadWrite)
        .unwrap()
        .build();
    let mut store = Store::new(
        engine,
        Wasi {
            ctx,
            table: ResourceTable::new(),
        },
    );
    let instance = generic::Standalone::instantiate(&mut store, component, &linker).unwrap();
    (store, instance)
}

fn create(id: &str, provide_code: bool) -> CreateRequest {
    CreateRequest {
        service_id: id.into(),
        resource_group: "DNIS".into(),
        provide_code,
        phone_number: None,
        booking_expiration_timeout: None,
    }
}

#[test]
fn the_standalone_component_imports_only_wasi() {
    let engine = Engine::default();
    let component = Component::new(&engine, STANDALONE_WASM).unwrap();
    let ty = component.component_type();
    let imports: Vec<&str> = ty.imports(&engine).map(|(name, _)| name).collect();
    assert!(!imports.is_empty());
    for import in &imports {
        assert!(
            import.starts_with("wasi:"),
            "{import} is not WASI: {imports:?}"
        );
    }
    assert!(
        imports
            .iter()
            .any(|i| i.starts_with("wasi:filesystem/preopens"))
    );
    let exports: Vec<&str> = ty.exports(&engine).map(|(name, _)| name).collect();
    assert_eq!(
        exports,
        [
            "contact-center:request-access/request-access@0.1.1",
            "contact-center:request-access/placement@0.1.1",
            "contact-center:request-access/lease@0.1.1"
        ]
    );
}

#[test]
fn consecutive_generic_invocations_share_reservations_through_the_state_file() {
    let state = tempfile::tempdir().unwrap();
    std::fs::write(state.path().join("config.toml"), CONFIG).unwrap();
    let engine = Engine::default();
    let component = Component::new(&engine, STANDALONE_WASM).unwrap();

    let (mut store, plugin) = invocation(&engine, &component, state.path());
    let api = plugin.contact_center_request_access_request_access();
    let first = api
        .call_create(&mut store, &create("s1", true))
        .unwrap()
        .unwrap();
    assert_eq!(first.access_number, "+18005550100");
    drop(store);

    let (mut store, plugin) = invocation(&engine, &component, state.path());
    let api = plugin.contact_center_request_access_request_access();
    let second = api
        .call_create(&mut store, &create("s2", false))
        .unwrap()
        .unwrap();
    assert_eq!(
        second.access_number, "+18005550101",
        "saw the first reservation"
    );
    drop(store);

    let (mut store, plugin) = invocation(&engine, &component, state.path());
    let api = plugin.contact_center_request_access_request_access();
    let call = MatchRequest {
        access_number: first.access_number.clone(),
        access_code: first.access_code.clone(),
        phone_number: None,
    };
    let matched = api.call_match_access(&mut store, &call).unwrap().unwrap();
    assert_eq!(matched.service_id, "s1");
    let released = api.call_release(&mut store, "s2", "DNIS").unwrap().unwrap();
    assert_eq!(released, "+18005550101");
    let status = api.call_pool_status(&mut store, "DNIS").unwrap().unwrap();
    assert_eq!((status.size, status.live), (5, 0));
}

#[test]
fn the_minimal_embedding_example_creates_and_matches() {
    let (number, service) = embed::run(PLUGIN_WASM).unwrap();
    assert_eq!(number, "+18005550100");
    assert_eq!(service, "demo-service");
}

fn wasmtime_invoke(wasmtime: &str, component: &Path, state: &Path, call: &str) -> String {
    let out = Command::new(wasmtime)
        .arg("run")
        .arg("--dir")
        .arg(format!("{}::/state", state.display()))
        .arg("--invoke")
        .arg(call)
        .arg(component)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "{call}: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The standalone component in a temporary directory, and its state directory holding
/// `config` as `config.toml`.
fn standalone_with(config: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let component = dir.path().join("request-access-standalone.wasm");
    std::fs::write(&component, STANDALONE_WASM).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::write(state.join("config.toml"), config).unwrap();
    (dir, component, state)
}

/// The text between `key: "` and the next `"`.
fn quoted<'a>(text: &'a str, key: &str) -> &'a str {
    let start = text
        .find(&format!("{key}: \""))
        .unwrap_or_else(|| panic!("{key} in {text}"))
        + key.len()
        + 3;
    &text[start..start + text[start..].find('"').unwrap()]
}

#[test]
fn the_wasmtime_cli_allocates_matches_and_releases_with_the_standalone_component() {
    let Some(wasmtime) = tool("wasmtime") else {
        return;
    };
    let (_dir, component, state) = standalone_with(CONFIG);

    let first = wasmtime_invoke(
        &wasmtime,
        &component,
        &state,
        r#"create({service-id: "s1", resource-group: "DNIS", provide-code: true, phone-number: none, booking-expiration-timeout: none})"#,
    );
    assert!(first.starts_with("ok("), "{first}");
    assert_eq!(quoted(&first, "access-number"), "+18005550100");
    let code = first
        .split("access-code: some(\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no code in {first}"));

    let second = wasmtime_invoke(
        &wasmtime,
        &component,
        &state,
        r#"create({service-id: "s2", resource-group: "DNIS", provide-code: false, phone-number: none, booking-expiration-timeout: some(60)})"#,
    );
    assert_eq!(quoted(&second, "access-number"), "+18005550101", "{second}");
    assert!(second.contains("expiration-time: 60"), "{second}");

    let matched = wasmtime_invoke(
        &wasmtime,
        &component,
        &state,
        &format!(
            r#"match-access({{access-number: "+18005550100", access-code: some("{code}"), phone-number: none}})"#
        ),
    );
    assert_eq!(quoted(&matched, "service-id"), "s1", "{matched}");

    // `lease.extend`: the same number, for ten more minutes.
    let extended = wasmtime_invoke(
        &wasmtime,
        &component,
        &state,
        r#"extend({service-id: "s2", resource-group: "DNIS", booking-expiration-timeout: some(600)})"#,
    );
    assert_eq!(
        quoted(&extended, "access-number"),
        "+18005550101",
        "{extended}"
    );
    assert!(extended.contains("expiration-time: 600"), "{extended}");

    let released = wasmtime_invoke(&wasmtime, &component, &state, r#"release("s2", "DNIS")"#);
    assert_eq!(released, r#"ok("+18005550101")"#);
    let again = wasmtime_invoke(&wasmtime, &component, &state, r#"release("s2", "DNIS")"#);
    assert_eq!(again, "err(no-match)");

    // `placement.place` by its own name: the answer names the group that lent it.
    let placed = wasmtime_invoke(
        &wasmtime,
        &component,
        &state,
        r#"place({service-id: "s1", resource-group: "DNIS", provide-code: false, phone-number: none, booking-expiration-timeout: none})"#,
    );
    assert!(placed.starts_with("ok("), "{placed}");
    assert_eq!(quoted(&placed, "resource-group"), "DNIS", "{placed}");
}

#[test]
fn under_wasmtime_a_bad_configuration_is_an_error_result_not_a_trap() {
    let Some(wasmtime) = tool("wasmtime") else {
        return;
    };
    let (_dir, component, state) =
        standalone_with("[[resource_group]]\nname = \"DNIS\"\nnumbers = [\"abc\"]\n");
    let why = "configuration: /state/config.toml:3: resource_group.numbers: \\\"abc\\\" is not";
    // Every call answers the configuration's line, as a result (`wasmtime_invoke`
    // asserts a clean exit: no trap), and changes nothing.
    for (call, error) in [
        (
            r#"create({service-id: "s1", resource-group: "DNIS", provide-code: true, phone-number: none, booking-expiration-timeout: none})"#,
            "err(registry-failure(",
        ),
        (
            r#"match-access({access-number: "+18005550100", access-code: none, phone-number: none})"#,
            "err(state-store-failure(",
        ),
        (r#"release("s1", "DNIS")"#, "err(state-store-failure("),
        (r#"pool-status("DNIS")"#, "err(state-store-failure("),
    ] {
        let answer = wasmtime_invoke(&wasmtime, &component, &state, call);
        assert!(
            answer.starts_with(error) && answer.contains(why),
            "{call}: {answer}"
        );
    }
    assert!(!state.join("reservations.bin").exists());
}

#[test]
fn overlapping_wasmtime_runs_lose_no_reservation_and_lend_no_number_twice() {
    let Some(wasmtime) = tool("wasmtime") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let component = dir.path().join("request-access-standalone.wasm");
    std::fs::write(&component, STANDALONE_WASM).unwrap();
    // Compiled once, so that the processes below start at once and overlap.
    let compiled = dir.path().join("request-access-standalone.cwasm");
    run_tool(
        &wasmtime,
        &[
            "compile".as_ref(),
            component.as_os_str(),
            "-o".as_ref(),
            compiled.as_os_str(),
        ],
    );
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::write(
        state.join("config.toml"),
        "[[resource_group]]\nname = \"DNIS\"\nnumbers = [\"+18005550100..+18005550111\"]\n\
         [registry]\nservices = [\"s0\", \"s1\", \"s2\", \"s3\", \"s4\", \"s5\", \"s6\", \"s7\", \
         \"s8\", \"s9\"]\n",
    )
    .unwrap();
    let run = |call: String| {
        let mut command = Command::new(&wasmtime);
        command
            .arg("run")
            .arg("--allow-precompiled")
            .arg("--dir")
            .arg(format!("{}::/state", state.display()))
            .arg("--invoke")
            .arg(call)
            .arg(&compiled);
        command
    };
    // Ten processes at once, each creating for its own service.
    let children: Vec<_> = (0..10)
        .map(|i| {
            run(format!(
                r#"create({{service-id: "s{i}", resource-group: "DNIS", provide-code: true, phone-number: none, booking-expiration-timeout: none}})"#
            ))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let mut lent = Vec::new();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            out.status.success() && stdout.starts_with("ok("),
            "s{i}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let code = stdout
            .split("access-code: some(\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_string();
        lent.push((i, quoted(&stdout, "access-number").to_string(), code));
    }
    let mut numbers: Vec<&str> = lent.iter().map(|(_, n, _)| n.as_str()).collect();
    numbers.sort();
    numbers.dedup();
    assert_eq!(numbers.len(), 10, "a number lent twice: {lent:?}");
    // Every acknowledged reservation is in the state: each matches its service.
    let status = run(r#"pool-status("DNIS")"#.into()).output().unwrap();
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("live: 10"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    for (i, number, code) in &lent {
        let out = run(format!(
            r#"match-access({{access-number: "{number}", access-code: some("{code}"), phone-number: none}})"#
        ))
        .output()
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(quoted(&stdout, "service-id"), format!("s{i}"), "{stdout}");
    }
    assert!(!state.join("reservations.lock").exists());
}

/// Where `.ci/run` installs jco and the Node WASI shim (pinned): `REQUEST_ACCESS_JCO_DIR`,
/// else `~/.cache/request-access/jco`; `None` (the test skipped) where Node or they are
/// missing, unless `REQUEST_ACCESS_REQUIRE_TOOLS` is set.
fn jco() -> Option<std::path::PathBuf> {
    tool("node")?;
    request_access_testkit::installed_tool("REQUEST_ACCESS_JCO_DIR", "jco", "node_modules/.bin/jco")
}

/// The few lines of JavaScript a user needs (as in the README): the state directory
/// preopened as `/state`, one call per process.
const NODE_SCRIPT: &str = r#"
import { _setPreopens } from '@bytecodealliance/preview2-shim/filesystem';
_setPreopens({ '/state': process.argv[2] });
const { requestAccess, placement, lease } = await import('./out/request-access-standalone.js');
const [op, ...args] = process.argv.slice(3);
const request = { serviceId: args[0], resourceGroup: 'DNIS', provideCode: true };
const show = (v) => JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? Number(x) : x));
try {
  const answer = op === 'create'
    ? requestAccess.create(request)
    : op === 'place'
    ? placement.place(request)
    : op === 'extend'
    ? lease.extend({ serviceId: args[0], resourceGroup: 'DNIS', bookingExpirationTimeout: 600 })
    : requestAccess.matchAccess({ accessNumber: args[0], accessCode: args[1] });
  console.log(show({ ok: answer }));
} catch (e) {
  console.log(show({ err: e.payload ?? String(e) }));
}
"#;

#[test]
fn the_standalone_component_runs_unmodified_under_jco_in_node() {
    let Some(jco) = jco() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let component = dir.path().join("request-access-standalone.wasm");
    std::fs::write(&component, STANDALONE_WASM).unwrap();
    run_tool(
        jco.join("node_modules/.bin/jco").to_str().unwrap(),
        &[
            "transpile".as_ref(),
            component.as_os_str(),
            "-o".as_ref(),
            dir.path().join("out").as_os_str(),
        ],
    );
    std::os::unix::fs::symlink(jco.join("node_modules"), dir.path().join("node_modules")).unwrap();
    std::fs::write(dir.path().join("package.json"), r#"{"type": "module"}"#).unwrap();
    std::fs::write(dir.path().join("call.mjs"), NODE_SCRIPT).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::write(state.join("config.toml"), CONFIG).unwrap();
    // Each call a Node process of its own: the state carries from one to the next.
    let call = |args: &[&str]| -> serde_json::Value {
        let out = Command::new("node")
            .arg("call.mjs")
            .arg(&state)
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{args:?}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    };
    let created = call(&["create", "s1"]);
    let number = created["ok"]["accessNumber"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"));
    let code = created["ok"]["accessCode"].as_str().unwrap();
    assert_eq!(number, "+18005550100");
    assert_eq!(code.len(), 6);
    let matched = call(&["match", number, code]);
    assert_eq!(matched["ok"]["serviceId"], "s1", "{matched}");
    let again = call(&["match", number, code]);
    assert_eq!(again["err"]["tag"], "no-match", "{again}");
    // `placement.place` answers the group that lent the number too.
    let placed = call(&["place", "s1"]);
    assert_eq!(placed["ok"]["resourceGroup"], "DNIS", "{placed}");
    assert_eq!(
        placed["ok"]["access"]["accessNumber"], "+18005550101",
        "{placed}"
    );
    // `lease.extend` keeps that number ten more minutes.
    let extended = call(&["extend", "s1"]);
    assert_eq!(extended["ok"]["accessNumber"], "+18005550101", "{extended}");
    assert_eq!(extended["ok"]["expirationTime"], 600, "{extended}");
    assert!(!state.join("reservations.lock").exists());
}

/// The wasm artifacts written to a temporary directory for external tools.
fn artifacts() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("request_access_guest.wasm");
    let standalone = dir.path().join("request-access-standalone.wasm");
    std::fs::write(&plugin, PLUGIN_WASM).unwrap();
    std::fs::write(&standalone, STANDALONE_WASM).unwrap();
    (dir, plugin, standalone)
}

fn run_tool(tool: &str, args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(tool).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `import`/`export` lines of a `wasm-tools component wit` listing's world.
fn world_items(wit: &str) -> Vec<String> {
    let mut items: Vec<String> = wit
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("import ") || l.starts_with("export "))
        .map(|l| l.trim_end_matches(';').to_string())
        .collect();
    items.sort();
    items
}

#[test]
fn wasm_tools_validates_the_artifacts_and_lists_exactly_the_declared_interface() {
    let Some(wasm_tools) = tool("wasm-tools") else {
        return;
    };
    let (_dir, plugin, standalone) = artifacts();
    for artifact in [&plugin, &standalone] {
        run_tool(&wasm_tools, &["validate".as_ref(), artifact.as_os_str()]);
    }
    let plugin_items = world_items(&run_tool(
        &wasm_tools,
        &["component".as_ref(), "wit".as_ref(), plugin.as_os_str()],
    ));
    let own: Vec<&String> = plugin_items
        .iter()
        .filter(|i| i.contains("contact-center:"))
        .collect();
    assert_eq!(
        own,
        [
            "export contact-center:request-access/lease@0.1.1",
            "export contact-center:request-access/placement@0.1.1",
            "export contact-center:request-access/request-access@0.1.1",
            "import contact-center:request-access/clock@0.1.1",
            "import contact-center:request-access/reservation-state@0.1.1",
            "import contact-center:request-access/resource-groups@0.1.1",
            "import contact-center:request-access/service-registry@0.1.1",
        ]
    );
    for item in &plugin_items {
        assert!(
            item.contains("contact-center:") || item.starts_with("import wasi:"),
            "{item}"
        );
    }
    let standalone_items = world_items(&run_tool(
        &wasm_tools,
        &["component".as_ref(), "wit".as_ref(), standalone.as_os_str()],
    ));
    for item in &standalone_items {
        assert!(
            item.starts_with("import wasi:")
                || item == "export contact-center:request-access/request-access@0.1.1"
                || item == "export contact-center:request-access/placement@0.1.1"
                || item == "export contact-center:request-access/lease@0.1.1",
            "{item}"
        );
    }
}

/// The WASI interfaces the plugin may import: no filesystem, no sockets.
const PLUGIN_WASI: &[&str] = &[
    "wasi:io/poll@0.2.6",
    "wasi:io/error@0.2.6",
    "wasi:io/streams@0.2.6",
    "wasi:random/random@0.2.6",
    "wasi:random/insecure-seed@0.2.6",
    "wasi:cli/environment@0.2.6",
    "wasi:cli/exit@0.2.6",
    "wasi:cli/stdin@0.2.6",
    "wasi:cli/stdout@0.2.6",
    "wasi:cli/stderr@0.2.6",
    "wasi:cli/terminal-input@0.2.6",
    "wasi:cli/terminal-output@0.2.6",
    "wasi:cli/terminal-stdin@0.2.6",
    "wasi:cli/terminal-stdout@0.2.6",
    "wasi:cli/terminal-stderr@0.2.6",
];

/// What the standalone component adds: clocks and the preopened state directory.
const STANDALONE_WASI: &[&str] = &[
    "wasi:clocks/monotonic-clock@0.2.6",
    "wasi:clocks/wall-clock@0.2.6",
    "wasi:filesystem/types@0.2.6",
    "wasi:filesystem/preopens@0.2.6",
];

/// A copy of the package in `wit` with two more worlds, the declared ones plus the WASI
/// they may use, and the WASI definitions (taken from the standalone component).
fn package_with_wasi(wasm_tools: &str, wit: &Path, standalone: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(wit).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wit") {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let extracted = tempfile::tempdir().unwrap();
    run_tool(
        wasm_tools,
        &[
            "component".as_ref(),
            "wit".as_ref(),
            standalone.as_os_str(),
            "--out-dir".as_ref(),
            extracted.path().as_os_str(),
        ],
    );
    std::fs::create_dir(dir.path().join("deps")).unwrap();
    for entry in std::fs::read_dir(extracted.path().join("deps")).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("request-access")
        {
            continue; // that package is the one under test
        }
        std::fs::copy(
            &path,
            dir.path().join("deps").join(path.file_name().unwrap()),
        )
        .unwrap();
    }
    let imports = |list: &[&str]| {
        list.iter()
            .map(|i| format!("    import {i};\n"))
            .collect::<String>()
    };
    // The package line of the contract under test, which the worlds below extend.
    let package = std::fs::read_to_string(wit.join("world.wit"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    std::fs::write(
        dir.path().join("targets.wit"),
        format!(
            "{package}\n\n\
             world plugin-on-wasi {{\n    include plugin;\n{}}}\n\n\
             world standalone-on-wasi {{\n    include standalone;\n{}{}}}\n",
            imports(PLUGIN_WASI),
            imports(PLUGIN_WASI),
            imports(STANDALONE_WASI)
        ),
    )
    .unwrap();
    dir
}

fn targets(wasm_tools: &str, wit: &Path, world: &str, component: &Path) -> std::process::Output {
    Command::new(wasm_tools)
        .args(["component", "targets", "--world", world])
        .arg(wit)
        .arg(component)
        .output()
        .unwrap()
}

#[test]
fn the_components_target_the_current_world() {
    let Some(wasm_tools) = tool("wasm-tools") else {
        return;
    };
    let (_dir, plugin, standalone) = artifacts();
    let current = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
    // (A plugin built against the released 0.1.0 contract, `tests/released-wit`, is
    // loaded and served by this host in `tests/tests/compatibility.rs`.)
    for wit in [&current] {
        let package = package_with_wasi(&wasm_tools, wit, &standalone);
        for (component, world) in [
            (&plugin, "plugin-on-wasi"),
            (&standalone, "standalone-on-wasi"),
        ] {
            let out = targets(&wasm_tools, package.path(), world, component);
            assert!(
                out.status.success(),
                "{} {world}: {}",
                wit.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // The plugin alone may not reach the filesystem: it does not target a world
        // that lacks what only the standalone adapter needs... and vice versa.
        let out = targets(&wasm_tools, package.path(), "plugin-on-wasi", &standalone);
        assert!(
            !out.status.success(),
            "the standalone component needs more than the plugin world"
        );
    }

    // A breaking change is caught: `release` loses a parameter in a copy of the WIT.
    let broken = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&current).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap().replace(
            "release: func(service-id: string, resource-group: string)",
            "release: func(service-id: string)",
        );
        std::fs::write(broken.path().join(path.file_name().unwrap()), text).unwrap();
    }
    let package = package_with_wasi(&wasm_tools, broken.path(), &standalone);
    let out = targets(&wasm_tools, package.path(), "plugin-on-wasi", &plugin);
    assert!(
        !out.status.success(),
        "a changed export signature must not target the world"
    );
}
