//! What ships beside the binary: the container image (`Dockerfile`), the compose file, the
//! Prometheus alert rules and the Grafana dashboard (`deploy/`), and the contract as a WIT
//! package. Without a container engine, the image's own commands (its entry point, its
//! environment, its health check) run here against the binary it would hold.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use request_access_testkit::{free_port, installed_tool, tool};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_request-access");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One Dockerfile instruction: its keyword and its arguments, continuation lines joined.
struct Instruction {
    keyword: String,
    args: String,
}

fn instructions(text: &str) -> Vec<Instruction> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if current.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(more) => current.push_str(more),
            None => {
                current.push_str(line);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    joined
        .into_iter()
        .map(|line| {
            let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
            Instruction {
                keyword: keyword.to_uppercase(),
                args: args.trim().to_string(),
            }
        })
        .collect()
}

/// An exec-form argument list, `["a", "b"]`.
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("not an exec-form list: {args}: {e}"))
}

/// `KEY=VALUE KEY=VALUE` of an ENV instruction.
fn env_pairs(args: &str) -> Vec<(String, String)> {
    args.split_whitespace()
        .map(|pair| {
            let (key, value) = pair.split_once('=').expect("ENV KEY=VALUE");
            (key.to_string(), value.to_string())
        })
        .collect()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The image's last stage, run as the image would run it: its entry point and command
/// with its environment (paths under its state volume moved to a temporary directory and
/// its port to a free one), then its health check, which passes while the service
/// serves and fails once it has stopped.
#[test]
fn the_image_runs_its_command_as_a_non_root_user_and_its_health_check_tells_ready() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let all = instructions(&dockerfile);
    let stages: Vec<usize> = (0..all.len())
        .filter(|&i| all[i].keyword == "FROM")
        .collect();
    assert!(
        stages.len() >= 2,
        "a multi-stage build: {} stages",
        stages.len()
    );

    // The build stage uses the toolchain rust-toolchain.toml pins.
    let toolchain = std::fs::read_to_string(repo().join("rust-toolchain.toml")).unwrap();
    let channel = toolchain
        .lines()
        .find_map(|l| l.strip_prefix("channel = "))
        .unwrap()
        .trim_matches('"');
    assert!(
        all[stages[0]].args.starts_with(&format!("rust:{channel}-")),
        "the build stage's image {} is not Rust {channel}",
        all[stages[0]].args
    );
    let build = all[stages[0]..stages[1]]
        .iter()
        .find(|i| i.keyword == "RUN" && i.args.contains("cargo build"))
        .expect("the build stage runs cargo build");
    assert!(
        build.args.contains("--locked") && build.args.contains("--release"),
        "{}",
        build.args
    );

    let last = &all[*stages.last().unwrap()..];
    let one = |keyword: &str| -> &str {
        let mut found = last.iter().filter(|i| i.keyword == keyword);
        let first = found.next().unwrap_or_else(|| panic!("no {keyword}"));
        assert!(found.next().is_none(), "more than one {keyword}");
        &first.args
    };
    let user = one("USER");
    let uid = user.split(':').next().unwrap();
    assert!(
        uid.parse::<u32>().is_ok_and(|uid| uid != 0),
        "USER {user}: not a numeric non-root user"
    );
    let volume = exec_form(one("VOLUME")).remove(0);
    let exposed: u16 = one("EXPOSE").parse().unwrap();
    let entrypoint = exec_form(one("ENTRYPOINT"));
    let command = exec_form(one("CMD"));
    let health = one("HEALTHCHECK");
    let health = exec_form(
        health
            .split_once("CMD")
            .expect("HEALTHCHECK ... CMD")
            .1
            .trim(),
    );
    assert_eq!(
        entrypoint[0], health[0],
        "the health check runs the service's binary"
    );
    assert!(
        last.iter()
            .any(|i| i.keyword == "COPY" && i.args.ends_with(&entrypoint[0])),
        "the binary {} is copied into the image",
        entrypoint[0]
    );

    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let local = |value: &str| {
        value
            .replace(&volume, &state.path().display().to_string())
            .replace(&format!(":{exposed}"), &format!(":{port}"))
            .replace("0.0.0.0:", "127.0.0.1:")
    };
    let env: BTreeMap<String, String> = last
        .iter()
        .filter(|i| i.keyword == "ENV")
        .flat_map(|i| env_pairs(&i.args))
        .map(|(k, v)| (k, local(&v)))
        .collect();
    assert!(
        env.values()
            .any(|v| v.starts_with(&*state.path().to_string_lossy())),
        "the state lives on the volume {volume}: {env:?}"
    );
    let args: Vec<String> = entrypoint[1..]
        .iter()
        .chain(&command)
        .map(|a| local(a))
        .collect();
    assert!(
        args.iter().any(|a| a == &format!("127.0.0.1:{port}")),
        "the command listens on the exposed port {exposed}: {command:?}"
    );
    let healthcheck = || {
        let args: Vec<String> = health[1..].iter().map(|a| local(a)).collect();
        Command::new(BIN).args(&args).env_clear().output().unwrap()
    };

    let server = Server(
        Command::new(BIN)
            .args(&args)
            .env_clear()
            .envs(&env)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port);
    let mut ready = healthcheck();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready.status.success() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        ready = healthcheck();
    }
    assert!(
        ready.status.success(),
        "{}",
        String::from_utf8_lossy(&ready.stderr)
    );
    assert!(
        state.path().join("state.redb").exists(),
        "the state file is on the volume"
    );
    drop(server);
    let down = healthcheck();
    assert_eq!(
        down.status.code(),
        Some(1),
        "a stopped service is unhealthy"
    );
    let said = String::from_utf8_lossy(&down.stderr);
    assert!(said.contains("did not answer"), "{said}");
}

/// hadolint, the Dockerfile linter, finds nothing to say of the Dockerfile (pinned base
/// images, exec-form commands, a non-root user, ...).
#[test]
fn hadolint_passes_the_dockerfile() {
    let Some(dir) = installed_tool("REQUEST_ACCESS_HADOLINT_DIR", "hadolint", "bin/hadolint")
    else {
        return;
    };
    let hadolint = dir.join("bin/hadolint").display().to_string();
    run_in(&repo(), &hadolint, &["--no-color", "Dockerfile"]);
}

/// The compose file is valid for Compose (its own parser) and runs three nodes on one
/// shared store: every node names every etcd member, and the members form one cluster.
#[test]
fn the_compose_file_runs_three_nodes_on_a_three_member_etcd_cluster() {
    let Some(compose) = tool("docker-compose") else {
        return;
    };
    let normalized = run_in(
        &repo(),
        &compose,
        &["-f", "compose.yaml", "--profile", "monitoring", "config"],
    );
    let config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&normalized).unwrap();
    let config: Value = serde_json::to_value(config).unwrap();
    let services = config["services"].as_object().unwrap();
    let nodes: Vec<&Value> = services
        .values()
        .filter(|s| s["image"].as_str() == Some("request-access:latest"))
        .collect();
    assert_eq!(nodes.len(), 3, "{services:?}");
    let members: Vec<&Value> = services
        .values()
        .filter(|s| s["image"].as_str().is_some_and(|i| i.contains("etcd")))
        .collect();
    assert_eq!(members.len(), 3);
    let cluster = members[0]["environment"]["ETCD_INITIAL_CLUSTER"]
        .as_str()
        .unwrap();
    for member in &members {
        let env = &member["environment"];
        assert_eq!(env["ETCD_INITIAL_CLUSTER"].as_str(), Some(cluster));
        let name = env["ETCD_NAME"].as_str().unwrap();
        let peer = env["ETCD_INITIAL_ADVERTISE_PEER_URLS"].as_str().unwrap();
        assert!(
            cluster.contains(&format!("{name}={peer}")),
            "{cluster} lacks {name}"
        );
    }
    let mut ports = Vec::new();
    for node in &nodes {
        assert!(
            node["build"]["context"].is_string(),
            "built from the Dockerfile"
        );
        // A node refuses a store with no leader: it starts once every member is healthy.
        for host in services.keys().filter(|k| k.starts_with("etcd")) {
            assert_eq!(
                node["depends_on"][host]["condition"], "service_healthy",
                "{node}"
            );
            assert!(services[host]["healthcheck"]["test"].is_array(), "{host}");
        }
        let store = node["environment"]["REQUEST_ACCESS_STORE"]
            .as_str()
            .unwrap();
        for host in services.keys().filter(|k| k.starts_with("etcd")) {
            assert!(
                store.contains(&format!("{host}:2379")),
                "{store} lacks {host}"
            );
        }
        ports.push(node["ports"][0]["published"].clone());
    }
    ports.dedup();
    assert_eq!(ports.len(), 3, "each node on a port of its own: {ports:?}");
}

/// The alert rules load in Prometheus (`promtool check rules`) and pass their unit tests:
/// each alert fires on the series that should raise it and not on the others.
#[test]
fn the_alert_rules_load_and_fire_when_they_should() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let dir = repo().join("deploy/prometheus");
    run_in(&dir, &promtool, &["check", "rules", "alerts.yml"]);
    run_in(&dir, &promtool, &["test", "rules", "alerts.test.yml"]);
    run_in(&dir, &promtool, &["check", "config", "prometheus.yml"]);
}

/// Every query of the Grafana dashboard is PromQL that Prometheus parses (each checked as
/// a recording rule by `promtool`, Grafana's variables given values), and every panel has
/// a data source and a title.
#[test]
fn every_dashboard_query_parses() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/grafana/dashboards/request-access.json"))
            .unwrap(),
    )
    .unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(panel["title"].as_str().is_some_and(|t| !t.is_empty()));
        if panel["type"] == "row" {
            continue;
        }
        assert!(panel["datasource"]["uid"].is_string(), "{}", panel["title"]);
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "5m")
                .replace("$instance", ".*")
                .replace("$group", ".*");
            rules.push_str(&format!(
                "      - record: dashboard:query{queries}\n        expr: {}\n",
                serde_json::to_string(&expr).unwrap()
            ));
            queries += 1;
        }
    }
    assert!(queries >= 10, "{queries} queries");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard.yml");
    std::fs::write(&file, &rules).unwrap();
    run_in(dir.path(), &promtool, &["check", "rules", "dashboard.yml"]);
}

fn run(program: &str, args: &[&str]) -> String {
    run_in(Path::new("."), program, args)
}

/// What `program args` prints, run in `dir`; it must succeed.
fn run_in(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `export-wit` writes the contract of `wit/` as a binary WIT package (alone, or in a
/// `wkg` local registry's layout), and the components `export-plugin` and
/// `export-standalone` write conform to its `plugin` and `standalone` worlds.
#[test]
fn the_exported_wit_package_is_the_contract_the_components_target() {
    let Some(wasm_tools) = tool("wasm-tools") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let said: Value =
        serde_json::from_str(&run(BIN, &["export-wit", &path("contract.wasm")])).unwrap();
    let package = said["package"].as_str().unwrap();
    assert!(
        package.starts_with("contact-center:request-access@"),
        "{said}"
    );
    run(&wasm_tools, &["validate", &path("contract.wasm")]);
    let source = repo().join("wit").display().to_string();
    assert_eq!(
        run(&wasm_tools, &["component", "wit", &path("contract.wasm")]),
        run(&wasm_tools, &["component", "wit", &source]),
        "the package is the contract of wit/, item for item"
    );

    // wkg's local registry: ROOT/{namespace}/{name}/{version}.wasm.
    run(BIN, &["export-wit", "--wkg-root", &path("registry")]);
    let version = package.rsplit_once('@').unwrap().1;
    let filed = dir.path().join(format!(
        "registry/contact-center/request-access/{version}.wasm"
    ));
    assert_eq!(
        std::fs::read(filed).unwrap(),
        std::fs::read(path("contract.wasm")).unwrap()
    );

    // wkg itself: `wkg build` makes the same package from wit/, and `wkg get` fetches
    // ours from the local registry `--wkg-root` filled.
    if let Some(wkg) = tool("wkg") {
        let built = path("wkg-built.wasm");
        run_in(&repo(), &wkg, &["build", "--wit-dir", "wit", "-o", &built]);
        assert_eq!(
            run(&wasm_tools, &["component", "wit", &path("wkg-built.wasm")]),
            run(&wasm_tools, &["component", "wit", &path("contract.wasm")]),
        );
        let config = format!(
            "[namespace_registries]\ncontact-center = \"local.test\"\n\
             [registry.\"local.test\"]\ntype = \"local\"\n\
             [registry.\"local.test\".local]\nroot = {:?}\n",
            path("registry")
        );
        std::fs::write(path("wkg.toml"), config).unwrap();
        run(
            &wkg,
            &[
                "get",
                "--config",
                &path("wkg.toml"),
                "--cache",
                &path("wkg-cache"),
                package,
                "-o",
                &path("fetched.wasm"),
            ],
        );
        assert_eq!(
            std::fs::read(path("fetched.wasm")).unwrap(),
            std::fs::read(path("contract.wasm")).unwrap()
        );
    }

    // Each component imports and exports what its world names, besides the WASI
    // interfaces Rust's standard library links in (a host provides those from WASI).
    run(BIN, &["export-plugin", &path("plugin.wasm")]);
    run(BIN, &["export-standalone", &path("standalone.wasm")]);
    let contract = run(&wasm_tools, &["component", "wit", &path("contract.wasm")]);
    let (name, version) = package.split_once('@').unwrap();
    for (component, world) in [("plugin.wasm", "plugin"), ("standalone.wasm", "standalone")] {
        let declared = world_items(&contract, world)
            .into_iter()
            .map(|(direction, item)| format!("{direction} {name}/{item}@{version};"))
            .collect::<std::collections::BTreeSet<_>>();
        let wit = run(&wasm_tools, &["component", "wit", &path(component)]);
        let linked = wit
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("import ") || l.starts_with("export "))
            .filter(|l| !l.contains(" wasi:"))
            .map(String::from)
            .collect::<std::collections::BTreeSet<_>>();
        assert_eq!(linked, declared, "{component} against world {world}");
    }
}

/// The `import x;` and `export x;` items of `world` in a package's WIT text.
fn world_items(wit: &str, world: &str) -> Vec<(String, String)> {
    let start = wit
        .find(&format!("world {world} {{"))
        .unwrap_or_else(|| panic!("no world {world}"));
    let body = &wit[start..];
    let body = &body[..body.find("\n}").expect("the world ends")];
    body.lines()
        .map(str::trim)
        .filter_map(|l| {
            let (direction, item) = l.split_once(' ')?;
            let item = item.strip_suffix(';')?;
            matches!(direction, "import" | "export").then(|| (direction.into(), item.into()))
        })
        .collect()
}
