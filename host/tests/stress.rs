//! Concurrency stress and crash recovery over HTTP. Many clients create, match and
//! release on a small pool; a checker replays every acknowledged holding and finds no
//! number held by two services at once. The crash variant kills the server with
//! SIGKILL at random moments and restarts it on the same data file; every acknowledged
//! reservation must still match, and none may be lent twice.
//!
//! The cluster variant runs the same clients over three nodes sharing one real Redis,
//! kills one node with SIGKILL (its clients move to the others, as behind a load
//! balancer) and then Redis itself, restarted from its append-only file. The
//! rolling-update variant moves the three nodes one by one to a file whose pool differs
//! (numbers removed, numbers added) while the clients run, so that two pool definitions
//! serve at once for half of the run.
//!
//! Short by default (CI); `REQUEST_ACCESS_LONG=1` runs the full size: 64 clients,
//! 20,000 requests, 20 kills.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::holdings::{Holding, double_bookings};
use common::*;

fn long() -> bool {
    std::env::var_os("REQUEST_ACCESS_LONG").is_some()
}

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    transport_errors: AtomicU64,
    lost: AtomicU64,
    ambiguous: AtomicU64,
    exhausted: AtomicU64,
    store_unavailable: AtomicU64,
    /// Of `store_unavailable`: calls a node shed because its group's earlier calls held
    /// the gate past the command timeout (load, not a failure of the store).
    shed: AtomicU64,
    /// Of `store_unavailable`: answers without a Retry-After.
    without_retry_after: AtomicU64,
    /// The longest a `state-store-failure` answer took, in milliseconds.
    slowest_unavailable_ms: AtomicU64,
}

/// Count a 503 `state-store-failure`.
fn store_unavailable(reply: &Reply, tally: &Tally) {
    tally.store_unavailable.fetch_add(1, Ordering::Relaxed);
    if reply.body["message"]
        .as_str()
        .is_some_and(|m| m.contains("is busy"))
    {
        tally.shed.fetch_add(1, Ordering::Relaxed);
    }
    std::thread::sleep(Duration::from_millis(20));
}

/// The base URL clients use; it changes only if the server moves.
type Target = Arc<Mutex<String>>;

fn post(target: &Target, path: &str, fields: &[(&str, &str)], tally: &Tally) -> Option<Reply> {
    tally.requests.fetch_add(1, Ordering::Relaxed);
    let url = format!("{}{path}", target.lock().unwrap());
    let sent = Instant::now();
    match agent().post(&url).send_form(fields.iter().copied()) {
        Ok(r) => {
            let r = reply(r);
            if r.status == 503 && r.body["code"] == "state-store-failure" {
                let took = sent.elapsed().as_millis() as u64;
                tally
                    .slowest_unavailable_ms
                    .fetch_max(took, Ordering::Relaxed);
                if r.retry_after.is_none() {
                    tally.without_retry_after.fetch_add(1, Ordering::Relaxed);
                }
            }
            Some(r)
        }
        Err(_) => {
            tally.transport_errors.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(20));
            None
        }
    }
}

/// One client: create with a code, then match it (two in three) or release it.
fn client(
    id: usize,
    target: Target,
    budget: u64,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) -> Vec<Holding> {
    let service = format!("s{id}");
    let mut holdings = Vec::new();
    let mut round = 0u64;
    while tally.requests.load(Ordering::Relaxed) < budget && !stop.load(Ordering::Relaxed) {
        round += 1;
        let asked = Instant::now();
        let Some(created) = post(
            &target,
            "/genesys/1/service/request-access",
            &[
                ("_id", &service),
                ("_resource_group", "DNIS"),
                ("_provide_code", "true"),
            ],
            &tally,
        ) else {
            // Unknown outcome: give back whatever may be held before going on.
            while post(
                &target,
                "/genesys/1/service/release-access",
                &[("_id", &service), ("_resource_group", "DNIS")],
                &tally,
            )
            .is_none()
            {
                if stop.load(Ordering::Relaxed) {
                    return holdings;
                }
            }
            continue;
        };
        if created.status == 503 && created.body["code"] == "state-store-failure" {
            // The store was down: the create may have landed unseen; the next create
            // of this service replaces it.
            store_unavailable(&created, &tally);
            continue;
        }
        if created.status == 503 {
            tally.exhausted.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        assert_eq!(created.status, 200, "{:?}", created.body);
        let from = Instant::now();
        let number = created.body["_access_number"].as_str().unwrap().to_string();
        let code = created.body["_access_code"].as_str().unwrap().to_string();
        let matching = !round.is_multiple_of(3);
        let mut first_attempt: Option<Instant> = None;
        let mut attempts = 0;
        let mut lost = false;
        loop {
            attempts += 1;
            let sent = Instant::now();
            first_attempt.get_or_insert(sent);
            let answer = if matching {
                post(
                    &target,
                    "/genesys/1/service/match-interaction",
                    &[("_access_number", &number), ("_access_code", &code)],
                    &tally,
                )
            } else {
                post(
                    &target,
                    "/genesys/1/service/release-access",
                    &[("_id", &service), ("_resource_group", "DNIS")],
                    &tally,
                )
            };
            match answer {
                None => continue, // server down: retry
                Some(r) if r.status == 503 && r.body["code"] == "state-store-failure" => {
                    // The store was down: the call may have landed; retry.
                    store_unavailable(&r, &tally);
                    continue;
                }
                Some(r) if r.status == 200 => break,
                Some(r) if r.status == 404 && attempts == 1 => {
                    // An acknowledged reservation that does not match: lost.
                    tally.lost.fetch_add(1, Ordering::Relaxed);
                    lost = true;
                    break;
                }
                Some(r) if r.status == 404 => {
                    // An earlier attempt may have succeeded before its answer was lost.
                    tally.ambiguous.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Some(r) => panic!("unexpected {} {:?}", r.status, r.body),
            }
        }
        holdings.push(Holding {
            number,
            asked,
            service: service.clone(),
            from,
            to: first_attempt.unwrap(),
            lost,
        });
    }
    holdings
}

/// Running clients, their shared tally and the flag that stops them.
struct Clients {
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    started: Instant,
    handles: Vec<std::thread::JoinHandle<Vec<Holding>>>,
}

/// Start `clients` clients, client `id` talking to `target(id)`, until `budget` requests.
fn spawn_clients(clients: usize, budget: u64, target: impl Fn(usize) -> Target) -> Clients {
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let handles = (0..clients)
        .map(|id| {
            let (target, tally, stop) = (target(id), tally.clone(), stop.clone());
            std::thread::spawn(move || client(id, target, budget, tally, stop))
        })
        .collect();
    Clients {
        tally,
        stop,
        started: Instant::now(),
        handles,
    }
}

fn stress(kills: usize) {
    let (clients, budget) = if long() { (64, 20_000) } else { (64, 3_000) };
    let dir = tempfile::tempdir().unwrap();
    let text = config(50, clients as u32, "[server]\nrequest_timeout_ms = 30000\n");
    let mut server = Server::start(dir.path(), &text, None);
    let listen = server.base.trim_start_matches("http://").to_string();
    let target: Target = Arc::new(Mutex::new(server.base.clone()));
    let Clients {
        tally,
        stop,
        started,
        handles,
    } = spawn_clients(clients, budget, |_| target.clone());

    let mut restarts = Vec::new();
    for k in 0..kills {
        // A random moment: 50..350 ms into this stretch of traffic.
        let pause = 50 + (k as u64 * 7919 + started.elapsed().as_nanos() as u64) % 300;
        std::thread::sleep(Duration::from_millis(pause));
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        drop(server);
        server = Server::start_on(dir.path(), &text, &listen);
        restarts.push(server.startup);
    }
    let holdings = join(handles, &stop);
    verdict(
        &format!("{kills} kills (restarts {restarts:?})"),
        &tally,
        &holdings,
        budget,
        started,
    );
}

/// Every client's holdings, once all have finished.
fn join(handles: Vec<std::thread::JoinHandle<Vec<Holding>>>, stop: &AtomicBool) -> Vec<Holding> {
    let mut holdings = Vec::new();
    for h in handles {
        holdings.extend(h.join().expect("a client failed"));
    }
    stop.store(true, Ordering::Relaxed);
    holdings
}

/// Report the run, and fail it on a double booking or a lost reservation.
fn verdict(what: &str, tally: &Tally, holdings: &[Holding], budget: u64, started: Instant) {
    let doubled = double_bookings(holdings);
    let requests = tally.requests.load(Ordering::Relaxed);
    eprintln!(
        "stress: {requests} requests in {:?}, {} reservations, {} exhausted, {} transport \
         errors, {} store unavailable ({} shed, slowest {} ms), {what}, lost {}, ambiguous {}, \
         doubled {}",
        started.elapsed(),
        holdings.len(),
        tally.exhausted.load(Ordering::Relaxed),
        tally.transport_errors.load(Ordering::Relaxed),
        tally.store_unavailable.load(Ordering::Relaxed),
        tally.shed.load(Ordering::Relaxed),
        tally.slowest_unavailable_ms.load(Ordering::Relaxed),
        tally.lost.load(Ordering::Relaxed),
        tally.ambiguous.load(Ordering::Relaxed),
        doubled.len()
    );
    assert!(requests >= budget, "{requests} requests");
    assert!(
        doubled.is_empty(),
        "double bookings: {:?}",
        &doubled[..doubled.len().min(3)]
    );
    assert_eq!(
        tally.lost.load(Ordering::Relaxed),
        0,
        "acknowledged reservations lost"
    );
}

#[test]
fn many_clients_on_a_small_pool_never_share_a_number() {
    stress(0);
}

#[test]
fn repeated_kill_9_during_the_stress_loses_and_doubles_nothing() {
    stress(if long() { 20 } else { 3 });
}

/// Wait until the clients have sent `requests` requests in all.
fn until_requests(tally: &Tally, requests: u64) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while tally.requests.load(Ordering::Relaxed) < requests {
        assert!(Instant::now() < deadline, "the clients stalled");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Three `serve` nodes sharing the store at a URL, for stress clients that talk to node
/// `id % 3` through `targets`.
struct ThreeNodes {
    dirs: Vec<tempfile::TempDir>,
    text: String,
    nodes: Vec<Server>,
    targets: Vec<Target>,
}

impl ThreeNodes {
    fn start(store_url: &str, clients: usize) -> ThreeNodes {
        let text = config(
            50,
            clients as u32,
            &format!(
                "[server]\nrequest_timeout_ms = 30000\nadmin_token = \"{TOKEN}\"\n\
                 [store]\nurl = \"{store_url}\"\n"
            ),
        );
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let nodes: Vec<Server> = dirs
            .iter()
            .map(|d| Server::start(d.path(), &text, None))
            .collect();
        let targets = nodes
            .iter()
            .map(|n| Arc::new(Mutex::new(n.base.clone())))
            .collect();
        ThreeNodes {
            dirs,
            text,
            nodes,
            targets,
        }
    }

    /// Client `id`'s node.
    fn target(&self, id: usize) -> Target {
        self.targets[id % 3].clone()
    }

    /// `kill -9` node 0 mid-stream: its clients move to node 1. Answers its address, for
    /// [`ThreeNodes::restart_first`].
    fn kill_first(&mut self) -> String {
        let listen = self.nodes[0].base.trim_start_matches("http://").to_string();
        *self.targets[0].lock().unwrap() = self.nodes[1].base.clone();
        self.nodes[0].child.kill().unwrap();
        self.nodes[0].child.wait().unwrap();
        listen
    }

    /// Node 0 back on `listen`, and its clients with it.
    fn restart_first(&mut self, listen: &str) {
        self.nodes[0] = Server::start_on(self.dirs[0].path(), &self.text, listen);
        *self.targets[0].lock().unwrap() = self.nodes[0].base.clone();
    }

    /// Every node reports the same occupancy.
    fn assert_agree(&self) {
        let pools: Vec<_> = self
            .nodes
            .iter()
            .map(|n| get(&n.url("/admin/pools"), Some(TOKEN)).body)
            .collect();
        assert!(pools.iter().all(|p| p == &pools[0]), "{pools:?}");
    }
}

#[test]
fn a_three_node_cluster_loses_and_doubles_nothing_through_node_and_redis_kills() {
    let Some(redis) = request_access_testkit::RedisServer::start() else {
        return;
    };
    let (clients, budget) = if long() { (64, 20_000) } else { (64, 3_000) };
    let mut cluster = ThreeNodes::start(&redis.url(), clients);
    let Clients {
        tally,
        stop,
        started,
        handles,
    } = spawn_clients(clients, budget, |id| cluster.target(id));

    // A node dies mid-stream; its clients move to another node, the others go on.
    until_requests(&tally, budget / 4);
    let listen = cluster.kill_first();
    until_requests(&tally, budget / 2);
    cluster.restart_first(&listen);

    // Redis itself dies, and comes back from its append-only file.
    until_requests(&tally, 2 * budget / 3);
    redis.kill9();
    std::thread::sleep(Duration::from_millis(300));
    redis.launch();

    let holdings = join(handles, &stop);
    verdict(
        "three nodes on Redis, one node and Redis killed",
        &tally,
        &holdings,
        budget,
        started,
    );
    assert!(
        tally.store_unavailable.load(Ordering::Relaxed) > 0,
        "the Redis outage went unnoticed"
    );
    cluster.assert_agree();
}

#[test]
fn three_nodes_on_etcd_lose_and_double_nothing_through_leader_kill_node_kill_and_a_frozen_member() {
    let Some(etcd) = request_access_testkit::EtcdCluster::start(3) else {
        return;
    };
    let (clients, budget) = if long() { (64, 20_000) } else { (64, 3_000) };
    let mut cluster = ThreeNodes::start(&etcd.url(), clients);
    let Clients {
        tally,
        stop,
        started,
        handles,
    } = spawn_clients(clients, budget, |id| cluster.target(id));

    // The etcd leader dies: the other two elect another and go on.
    until_requests(&tally, budget / 5);
    let leader = etcd.leader().expect("a leader");
    etcd.kill9(leader);
    let killed_at = Instant::now();
    let next = etcd.wait_for_leader(Duration::from_secs(30));
    assert_ne!(next, leader);
    eprintln!(
        "etcd: member {leader} killed, member {next} leads after {:?}",
        killed_at.elapsed()
    );

    // A node dies mid-stream; its clients move to another node.
    until_requests(&tally, 2 * budget / 5);
    let listen = cluster.kill_first();
    // The killed member comes back and catches up from its peers.
    etcd.launch(leader);
    until_requests(&tally, 3 * budget / 5);
    cluster.restart_first(&listen);

    // The leader stops answering without closing its connections (SIGSTOP), for longer
    // than an election, then goes on as a follower.
    until_requests(&tally, 4 * budget / 5);
    let frozen = etcd.leader().expect("a leader");
    etcd.freeze(frozen);
    std::thread::sleep(Duration::from_secs(3));
    etcd.thaw(frozen);

    let holdings = join(handles, &stop);
    verdict(
        "three nodes on etcd: the etcd leader killed, a node killed, a member frozen",
        &tally,
        &holdings,
        budget,
        started,
    );
    // Unavailability was a fast 503 with Retry-After, never a hang: each is bounded by
    // the command timeout per store call (1 s), far below the 30 s request timeout.
    assert_eq!(tally.without_retry_after.load(Ordering::Relaxed), 0);
    let slowest = tally.slowest_unavailable_ms.load(Ordering::Relaxed);
    assert!(slowest < 5_000, "a 503 took {slowest} ms");
    // Every node, the two that never restarted included, serves and agrees.
    cluster.assert_agree();
    for node in &cluster.nodes {
        let created = post_form(
            &create_url(node),
            &[("_id", "s1"), ("_resource_group", "DNIS")],
        );
        assert_eq!(created.status, 200, "{:?}", created.body);
    }
}

/// The pool the rolling update starts from and the one it ends with: five numbers
/// removed, ten added.
const BEFORE: &str = "5550000..5550049";
const AFTER: &str = "5550005..5550059";

fn rolling_config(numbers: &str, clients: usize, redis_url: &str) -> String {
    let ids: Vec<String> = (0..clients).map(|i| format!("\"s{i}\"")).collect();
    format!(
        "[[resource_group]]\nname = \"DNIS\"\nnumbers = [\"{numbers}\"]\n\
         [registry]\nservices = [{}]\n\
         [server]\nrequest_timeout_ms = 30000\nadmin_token = \"{TOKEN}\"\n\
         [store]\nurl = \"{redis_url}\"\n",
        ids.join(",")
    )
}

#[test]
fn a_rolling_update_of_the_pool_on_three_nodes_faults_nothing_and_lends_nothing_twice() {
    let Some(redis) = request_access_testkit::RedisServer::start() else {
        return;
    };
    let (clients, budget) = if long() { (64, 20_000) } else { (64, 3_000) };
    let before = rolling_config(BEFORE, clients, &redis.url());
    let after = rolling_config(AFTER, clients, &redis.url());
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes: Vec<Server> = dirs
        .iter()
        .map(|d| Server::start(d.path(), &before, None))
        .collect();
    let Clients {
        tally,
        stop,
        started,
        handles,
    } = spawn_clients(clients, budget, |id| {
        Arc::new(Mutex::new(nodes[id % 3].base.clone()))
    });

    // Node by node, as a rolling update does: nodes 0 and 1 serve the new file while
    // node 2 still serves the old one.
    let mut updated_at = Vec::new();
    for (k, node) in nodes.iter().enumerate() {
        until_requests(&tally, budget * (k as u64 + 1) / 4);
        std::fs::write(node.dir.join("config.toml"), &after).unwrap();
        let reloaded = reply(
            agent()
                .post(&node.url("/admin/config/reload"))
                .header("authorization", &format!("Bearer {TOKEN}"))
                .send_empty()
                .unwrap(),
        );
        assert_eq!(reloaded.status, 200, "{:?}", reloaded.body);
        updated_at.push(Instant::now());
    }

    let holdings = join(handles, &stop);
    verdict(
        "three nodes on Redis, a rolling update of the pool",
        &tally,
        &holdings,
        budget,
        started,
    );
    // No request failed. Calls shed under load (503 with Retry-After when a node's
    // queue for the group outlasts the command timeout) happen on this machine with or
    // without an update, and are not failures of the update.
    let failed =
        tally.store_unavailable.load(Ordering::Relaxed) - tally.shed.load(Ordering::Relaxed);
    assert_eq!(failed, 0, "requests failed");
    // Once every node serves the new file, only its numbers are lent (a call keeps the
    // configuration it started with: only creates sent after the last reload count).
    let all_updated = *updated_at.last().unwrap();
    let removed: Vec<String> = (5_550_000..5_550_005).map(|n| n.to_string()).collect();
    let late: Vec<&Holding> = holdings.iter().filter(|i| i.asked > all_updated).collect();
    assert!(
        late.len() > 100,
        "{} reservations after the update",
        late.len()
    );
    assert!(
        late.iter().all(|i| !removed.contains(&i.number)),
        "a removed number was lent after the update"
    );
    let added = late
        .iter()
        .filter(|i| i.number.as_str() > "5550049")
        .count();
    assert!(added > 0, "the added numbers were never lent");
    // Every node reports the same, exact status: every reservation has ended.
    for node in &nodes {
        let pools = get(&node.url("/admin/pools"), Some(TOKEN)).body;
        let dnis = &pools["groups"][0];
        assert_eq!(
            (&dnis["size"], &dnis["live"], &dnis["free"]),
            (
                &serde_json::json!(55),
                &serde_json::json!(0),
                &serde_json::json!(55)
            ),
            "{pools}"
        );
    }
}
