//! Pool sizing on `/admin/pools`, the metrics and the page's data: the demand a node
//! measures from the creates it answers, through the real plugin and router, on a clock
//! the test drives, with Erlang B's blocking probability and the numbers needed.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use request_access_host::clock::ManualClock;
use request_access_host::config::Config;
use request_access_host::http::{self, AppState};
use request_access_host::plugin::{PluginImage, PluginSource};
use request_access_host::runtime::{Limits, Runtime};
use request_access_host::services::Services;
use request_access_host::store::MemoryStore;
use serde_json::Value;

const TOKEN: &str = "sizing-token";

fn app(clock: Arc<ManualClock>) -> Arc<AppState> {
    let services: Vec<String> = (0..40).map(|i| format!("\"s{i}\"")).collect();
    let config = format!(
        "[options]\nbooking_expiration_timeout = 60\nblocking_target = 0.01\n\
         [[resource_group]]\nname = \"DNIS\"\nreuse_cooldown = 30\nnumbers = [\"5550000..5550004\"]\n\
         [registry]\nservices = [{}]\n",
        services.join(",")
    );
    let services = Services::new(
        Config::parse(&config, "test").unwrap(),
        Arc::new(MemoryStore::new()),
        clock,
    );
    let runtime = Runtime::new(
        PluginImage::embedded().unwrap(),
        Arc::new(services),
        Limits::default(),
    );
    AppState::new(
        Arc::new(runtime),
        Some(TOKEN.into()),
        PluginSource::default(),
        Duration::from_secs(10),
        65_536,
        None,
    )
}

fn call(
    rt: &tokio::runtime::Runtime,
    app: &Arc<AppState>,
    request: Request<Body>,
) -> (u16, String) {
    let reply = rt
        .block_on(tower::ServiceExt::oneshot(
            http::router(app.clone()),
            request,
        ))
        .unwrap();
    let status = reply.status().as_u16();
    let body = rt
        .block_on(http_body_util::BodyExt::collect(reply.into_body()))
        .unwrap()
        .to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn create(id: &str) -> Request<Body> {
    Request::post("/genesys/1/service/request-access")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!("_id={id}&_resource_group=DNIS")))
        .unwrap()
}

fn admin(path: &str) -> Request<Body> {
    Request::get(path)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap()
}

#[test]
fn a_pool_too_small_for_its_demand_shows_its_blocking_and_the_numbers_it_needs() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let clock = Arc::new(ManualClock::new(1_767_225_600_000));
    let app = app(clock.clone());
    let (_, pools) = call(&rt, &app, admin("/admin/pools"));
    let pools: Value = serde_json::from_str(&pools).unwrap();
    assert_eq!(pools["groups"][0]["sizing"], Value::Null, "no history yet");

    // Ten minutes of a create every ten seconds: 6 a minute, each holding a number 60 s
    // and resting 30 s after, so 9 Erlangs on 5 numbers. Some are refused: exhausted.
    let (mut lent, mut refused) = (0, 0);
    for i in 0..60 {
        let (status, body) = call(&rt, &app, create(&format!("s{}", i % 40)));
        match status {
            200 => lent += 1,
            503 => refused += 1,
            other => panic!("{other}: {body}"),
        }
        clock.advance(Duration::from_secs(10));
    }
    assert!(refused > 0 && lent > 0, "lent {lent}, refused {refused}");

    let (status, pools) = call(&rt, &app, admin("/admin/pools"));
    assert_eq!(status, 200, "{pools}");
    let pools: Value = serde_json::from_str(&pools).unwrap();
    let sizing = &pools["groups"][0]["sizing"];
    assert_eq!(sizing["window_seconds"], 600, "{sizing}");
    let per_minute = sizing["offered_per_minute"].as_f64().unwrap();
    assert!((per_minute - 6.0).abs() < 1e-9, "{sizing}");
    assert_eq!(sizing["holding_seconds"], 90.0, "{sizing}");
    assert!((sizing["offered_erlangs"].as_f64().unwrap() - 9.0).abs() < 1e-9);
    // Erlang B at 9 Erlangs: 5 numbers refuse 52.5% of creates; 1% takes 17
    // (16 would refuse 1.1%).
    let blocking = sizing["blocking"].as_f64().unwrap();
    assert!((blocking - 0.524_908).abs() < 1e-6, "{sizing}");
    assert_eq!(sizing["target"], 0.01);
    assert_eq!(sizing["numbers_needed"], 17, "{sizing}");

    // The same on the metrics and on the page's data.
    let (_, metrics) = call(&rt, &app, admin("/metrics"));
    assert!(
        metrics.contains("request_access_pool_numbers_needed{group=\"DNIS\"} 17"),
        "{metrics}"
    );
    assert!(metrics.contains("request_access_pool_offered_erlangs{group=\"DNIS\"} 9"));
    assert!(metrics.contains("request_access_pool_blocking_probability{group=\"DNIS\"} 0.52"));
    let (_, overview) = call(&rt, &app, admin("/admin/overview"));
    let overview: Value = serde_json::from_str(&overview).unwrap();
    assert_eq!(overview["groups"][0]["sizing"]["numbers_needed"], 17);
}

/// Every `request_access_*` series the Grafana dashboard and the alert rules in `deploy/`
/// query is one a node exports, once it has answered creates for a while.
#[test]
fn the_dashboard_and_the_alerts_query_only_series_a_node_exports() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let clock = Arc::new(ManualClock::new(1_767_225_600_000));
    let app = app(clock.clone());
    for i in 0..12 {
        call(&rt, &app, create(&format!("s{i}")));
        clock.advance(Duration::from_secs(10));
    }
    let (status, metrics) = call(&rt, &app, admin("/metrics"));
    assert_eq!(status, 200, "{metrics}");
    // The names samples carry: a counter's `_total`, a histogram's `_bucket`, ...
    let exported: std::collections::BTreeSet<&str> = metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .collect();

    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let dashboard =
        std::fs::read_to_string(deploy.join("grafana/dashboards/request-access.json")).unwrap();
    let alerts = std::fs::read_to_string(deploy.join("prometheus/alerts.yml")).unwrap();
    let name = regex::Regex::new(r"request_access_[a-z_]+").unwrap();
    let mut queried = 0;
    for (file, text) in [("dashboard", &dashboard), ("alerts.yml", &alerts)] {
        for used in name.find_iter(text).map(|m| m.as_str()) {
            queried += 1;
            assert!(
                exported.contains(used),
                "{file} queries {used}, which /metrics does not export: {exported:?}"
            );
        }
    }
    assert!(
        queried > 20,
        "only {queried} series found in the dashboard and the alerts"
    );
}
