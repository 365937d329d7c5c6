//! `report`: gathers what `bench/quick` measured into one JSON object (the last line on
//! stdout) and draws the plots of `BENCHMARKS.md`.
//!
//! It reads criterion's samples (`target/criterion`), and the JSON written in the results
//! directory by the `component_vs_native` and `pool_size` benches (ratios measured in
//! alternation, bytes per reservation), the `load` driver (`load.json`), `startup`
//! (`startup.json`) and, where redis-server is installed, `shared` (`shared.json`, with
//! etcd's figures too where etcd is installed: see [`summarise_shared`]).
//! Every figure is a ratio of two things measured in the same run, or a size; absolute
//! times are printed for the record only.
//!
//! ```text
//! target/release/report --criterion target/criterion --results target/bench-results --plots bench/plots
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Map, Value, json};

#[derive(Parser)]
#[command(
    name = "report",
    about = "Summarise the quick benchmarks as one JSON object"
)]
struct Cli {
    /// Criterion's output directory.
    #[arg(long, default_value = "target/criterion")]
    criterion: PathBuf,
    /// Where the benches' and tools' JSON files are.
    #[arg(long, default_value = "target/bench-results")]
    results: PathBuf,
    /// Where to write the SVG plots.
    #[arg(long, default_value = "bench/plots")]
    plots: PathBuf,
}

const SIZES: [u32; 3] = [100, 10_000, 1_000_000];
const OCCUPANCIES: [u32; 5] = [0, 50, 90, 99, 100];

/// The targets of the performance work: (key, most allowed, or least with `at_least`).
const TARGETS: [(&str, f64, bool); 7] = [
    ("component_vs_native_create", 3.0, false),
    ("component_vs_native_match", 3.0, false),
    ("component_vs_native_release", 3.0, false),
    ("pool_1m_vs_100_create", 1.5, false),
    ("pool_1m_vs_100_exhausted", 1.5, false),
    ("pool_1m_vs_100_create_policies", 1.5, false),
    ("pool_1m_vs_100_create_shared", 1.5, false),
];

/// The time per call of one benchmark's fastest sample, in nanoseconds. Each sample
/// averages many calls; on a shared machine, noise only ever adds time, so the fastest
/// sample is the steadiest estimate of the cost itself (medians of the same runs moved
/// by up to a third between neighbouring benchmarks).
fn fastest_ns(criterion: &Path, id: &str) -> anyhow::Result<f64> {
    let path = criterion.join(id).join("new/sample.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{} (run the benchmark first)", path.display()))?;
    let sample: Value = serde_json::from_str(&text)?;
    let (Some(iters), Some(times)) = (sample["iters"].as_array(), sample["times"].as_array())
    else {
        bail!("{}: no samples", path.display());
    };
    iters
        .iter()
        .zip(times)
        .filter_map(|(n, t)| Some(t.as_f64()? / n.as_f64()?))
        .filter(|ns| ns.is_finite())
        .reduce(f64::min)
        .with_context(|| format!("{}: no samples", path.display()))
}

fn optional_fastest_ns(criterion: &Path, id: &str) -> Option<f64> {
    fastest_ns(criterion, id).ok()
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{} (run the benchmark first)", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// The shared stores' figures at the busiest client count: for each store, each node
/// count's throughput over the durable store's (one group; with more groups, the
/// throughput itself and the same ratio), and, for one node and one group, its store
/// calls and p99; the store's own ceiling with no service in the way, and what that
/// ceiling allows at the measured calls per create.
fn summarise_shared(shared: &Value, out: &mut Map<String, Value>) {
    out.insert("redis_round_trips".into(), shared["round_trips"].clone());
    if let Some(trips) = shared.get("etcd_round_trips") {
        out.insert("etcd_round_trips".into(), trips.clone());
    }
    let runs = shared["runs"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let busiest = runs.iter().filter_map(|r| r["clients"].as_u64()).max();
    for store in ["redis", "etcd"] {
        let ceiling = &shared["store_ceilings"][store];
        if !ceiling.is_null() {
            out.insert(format!("{store}_store_ceiling"), ceiling.clone());
        }
        for run in runs
            .iter()
            .filter(|r| r["store"] == store && r["clients"].as_u64() == busiest)
        {
            let nodes = run["nodes"].as_u64().unwrap_or(0);
            let groups = run["groups"].as_u64().unwrap_or(1);
            if groups > 1 {
                let key = format!("{store}_{nodes}_nodes_{groups}_groups");
                out.insert(format!("{key}_creates_per_s"), run["throughput"].clone());
                out.insert(
                    format!("{key}_vs_durable_throughput"),
                    run["over_durable"].clone(),
                );
                continue;
            }
            out.insert(
                format!("{store}_{nodes}_nodes_vs_durable_throughput"),
                run["over_durable"].clone(),
            );
            if nodes != 1 {
                continue;
            }
            out.insert(format!("{store}_clients"), run["clients"].clone());
            out.insert(format!("{store}_p99_ms"), run["p99_ms"].clone());
            out.insert(
                format!("{store}_store_calls_per_create"),
                run["store_calls_per_create"].clone(),
            );
            if store == "redis" {
                out.insert(
                    "redis_usec_per_create".into(),
                    run["redis_usec_per_create"].clone(),
                );
                out.insert(
                    "redis_ceiling_creates_per_s".into(),
                    run["ceiling_creates_per_s"].clone(),
                );
            }
            if let Some(bound) = store_bound_creates_per_s(ceiling, run) {
                out.insert(format!("{store}_store_bound_creates_per_s"), bound.into());
            }
        }
    }
}

/// Creates per second the store's own ceiling allows when every create makes the
/// run's commits and other calls (each read costed as a get): the most one store could
/// carry over all groups and nodes, whatever the service's own cost.
fn store_bound_creates_per_s(ceiling: &Value, run: &Value) -> Option<f64> {
    let commits = run["commits_per_create"].as_f64()?;
    let reads = run["store_calls_per_create"].as_f64()? - commits;
    let seconds_per_create =
        commits / ceiling["commits_per_s"].as_f64()? + reads / ceiling["gets_per_s"].as_f64()?;
    (seconds_per_create > 0.0).then(|| (1.0 / seconds_per_create).round())
}

fn round(x: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (x * scale).round() / scale
}

fn pool_id(store: &str, occupancy: u32, size: u32) -> String {
    format!("create-{store}/occupancy-{occupancy}/{size}")
}

/// The load run of `target` with the most clients.
fn busiest_run<'a>(load: &'a Value, target: &str) -> anyhow::Result<&'a Value> {
    load["runs"]
        .as_array()
        .context("load.json: no runs")?
        .iter()
        .filter(|r| r["target"] == target)
        .max_by_key(|r| r["clients"].as_u64())
        .with_context(|| format!("load.json: no {target} run"))
}

/// Per client count: the service's throughput over the bare route's and its p99, as
/// `{"1": {"vs_bare": .., "p99_ms": ..}, ..}`.
fn http_by_clients(load: &Value) -> Map<String, Value> {
    let runs = load["runs"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let find = |target: &str, clients: &Value| {
        runs.iter()
            .find(|r| r["target"] == target && r["clients"] == *clients)
    };
    let mut out = Map::new();
    for service in runs.iter().filter(|r| r["target"] == "service") {
        let Some(bare) = find("bare", &service["clients"]) else {
            continue;
        };
        let (s, b) = (
            service["throughput"].as_f64().unwrap_or(0.0),
            bare["throughput"].as_f64().unwrap_or(0.0),
        );
        if b > 0.0 {
            out.insert(
                service["clients"].to_string(),
                json!({ "vs_bare": round(s / b, 3), "p99_ms": service["p99_ms"] }),
            );
        }
    }
    out
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let c = &cli.criterion;
    let mut out = Map::new();

    // The targets' ratios come from the measurements in alternation; criterion's runs give
    // the absolute times (and the durable and random-allocation series).
    let paired = read_json(&cli.results.join("component_vs_native.json"))?;
    for op in ["create", "match", "release"] {
        out.insert(format!("component_vs_native_{op}"), paired[op].clone());
    }
    let pool = read_json(&cli.results.join("pool_size.json"))?;
    let by_occupancy = &pool["pool_1m_vs_100_by_occupancy"];
    let worst_paired = |occupancies: &[&str]| -> anyhow::Result<f64> {
        occupancies
            .iter()
            .map(|o| by_occupancy[o].as_f64())
            .collect::<Option<Vec<f64>>>()
            .and_then(|ratios| ratios.into_iter().reduce(f64::max))
            .context("pool_size.json: missing occupancies")
    };
    // The worst over the occupancies that allocate; 100% (exhausted) on its own.
    out.insert(
        "pool_1m_vs_100_create".into(),
        worst_paired(&["0", "50", "90", "99"])?.into(),
    );
    out.insert(
        "pool_1m_vs_100_exhausted".into(),
        worst_paired(&["100"])?.into(),
    );
    out.insert("pool_1m_vs_100_by_occupancy".into(), by_occupancy.clone());
    // Cool-off and fallback on every create, with sticky or with shared numbers (see
    // `pool_size.rs`).
    for key in [
        "pool_1m_vs_100_create_policies",
        "pool_1m_vs_100_create_shared",
    ] {
        out.insert(key.into(), pool[key].clone());
    }

    // Criterion's series, fastest samples: the durable store, random allocation.
    let pool_ratio = |store: &str, occupancies: &[u32]| -> Option<f64> {
        occupancies
            .iter()
            .filter_map(|&o| {
                Some(
                    optional_fastest_ns(c, &pool_id(store, o, 1_000_000))?
                        / optional_fastest_ns(c, &pool_id(store, o, 100))?,
                )
            })
            .reduce(f64::max)
            .map(|r| round(r, 2))
    };
    if let Some(r) = pool_ratio("memory-random", &[0, 50, 90, 99]) {
        out.insert("pool_1m_vs_100_create_random".into(), r.into());
    }
    if let Some(r) = pool_ratio("durable", &[0, 50, 90, 99]) {
        out.insert("pool_1m_vs_100_create_durable".into(), r.into());
    }

    let load = read_json(&cli.results.join("load.json"))?;
    let service = busiest_run(&load, "service")?;
    let bare = busiest_run(&load, "bare")?;
    let throughput = |run: &Value| run["throughput"].as_f64().unwrap_or(0.0);
    if throughput(bare) <= 0.0 {
        bail!("load.json: the bare route served nothing");
    }
    out.insert(
        "http_vs_bare_throughput".into(),
        round(throughput(service) / throughput(bare), 3).into(),
    );
    out.insert("http_p99_ms".into(), service["p99_ms"].clone());
    out.insert("http_clients".into(), service["clients"].clone());
    out.insert(
        "http_throughput".into(),
        round(throughput(service), 0).into(),
    );
    out.insert("http_by_clients".into(), http_by_clients(&load).into());

    out.insert(
        "bytes_per_reservation".into(),
        pool["memory_bytes_per_reservation"].clone(),
    );
    out.insert(
        "durable_bytes_per_reservation".into(),
        pool["durable_bytes_per_reservation"].clone(),
    );
    out.insert(
        "guest_peak_memory_bytes".into(),
        pool["guest_peak_memory_bytes"].clone(),
    );

    if let (Some(warm), Some(fresh), Some(fresh_pooling)) = (
        optional_fastest_ns(c, "instance/warm"),
        optional_fastest_ns(c, "instance/fresh"),
        optional_fastest_ns(c, "instance/fresh-pooling"),
    ) {
        out.insert(
            "instance_fresh_vs_warm".into(),
            round(fresh / warm, 2).into(),
        );
        out.insert(
            "instance_fresh_pooling_vs_warm".into(),
            round(fresh_pooling / warm, 2).into(),
        );
    }

    if let Ok(startup) = read_json(&cli.results.join("startup.json")) {
        out.insert("startup_no_cache_ms".into(), startup["no_cache_ms"].clone());
        out.insert("startup_cache_ms".into(), startup["cache_ms"].clone());
    }

    // wrk against the service and its own bare route (`wrk.json`, where wrk is installed).
    let wrk = read_json(&cli.results.join("wrk.json")).ok();
    if let Some(wrk) = &wrk {
        out.insert("wrk_vs_bare_throughput".into(), wrk["ratio"].clone());
        if let Some(service) = wrk["runs"].as_array().and_then(|runs| runs.last()) {
            out.insert("wrk_throughput".into(), service["throughput"].clone());
            out.insert("wrk_p99_ms".into(), service["p99_ms"].clone());
        }
    }

    // The shared stores (`shared.json`, written where redis-server is installed).
    let shared = read_json(&cli.results.join("shared.json")).ok();
    if let Some(shared) = &shared {
        summarise_shared(shared, &mut out);
    }

    let mut missed = Vec::new();
    if shared.is_some()
        && out
            .get("redis_1_nodes_vs_durable_throughput")
            .and_then(Value::as_f64)
            .unwrap_or(0.0)
            < 0.5
    {
        missed.push("redis_1_nodes_vs_durable_throughput".into());
    }
    for (key, bound, at_least) in TARGETS {
        let value = out[key].as_f64().unwrap_or(f64::NAN);
        let met = if at_least {
            value >= bound
        } else {
            value <= bound
        };
        if !met {
            missed.push(Value::from(key));
        }
    }
    if out["http_vs_bare_throughput"].as_f64().unwrap_or(0.0) < 0.5 {
        missed.push("http_vs_bare_throughput".into());
    }
    if wrk.is_some() && out["wrk_vs_bare_throughput"].as_f64().unwrap_or(0.0) < 0.35 {
        missed.push("wrk_vs_bare_throughput".into());
    }
    if out["http_p99_ms"].as_f64().unwrap_or(f64::INFINITY) >= 5.0 {
        missed.push("http_p99_ms".into());
    }
    out.insert("targets_missed".into(), missed.into());

    std::fs::create_dir_all(&cli.plots)?;
    std::fs::write(cli.plots.join("pool-size.svg"), pool_plot(c))?;
    std::fs::write(cli.plots.join("concurrency.svg"), concurrency_plot(&load)?)?;

    println!("{}", Value::Object(out));
    Ok(())
}

/// Create cost against pool size, one line per occupancy: in memory and durable.
fn pool_plot(c: &Path) -> String {
    let x_labels: Vec<String> = SIZES.iter().map(|s| format_count(*s)).collect();
    let series = |store: &str, unit: f64| -> Vec<(String, Vec<Option<f64>>)> {
        OCCUPANCIES
            .iter()
            .map(|&o| {
                let points = SIZES
                    .iter()
                    .map(|&s| optional_fastest_ns(c, &pool_id(store, o, s)).map(|ns| ns / unit))
                    .collect::<Vec<_>>();
                (format!("{o}% occupied"), points)
            })
            .collect()
    };
    figure(&[
        Panel {
            title: "create in memory (µs per call)",
            x_title: "numbers in the pool",
            x_labels: x_labels.clone(),
            series: series("memory-round-robin", 1e3),
            log_y: false,
        },
        Panel {
            title: "create, durable store (ms per call)",
            x_title: "numbers in the pool",
            x_labels,
            series: series("durable", 1e6),
            log_y: false,
        },
    ])
}

/// Throughput and p99 against concurrent clients, service and bare route.
fn concurrency_plot(load: &Value) -> anyhow::Result<String> {
    let runs = load["runs"].as_array().context("load.json: no runs")?;
    let mut clients: Vec<u64> = runs.iter().filter_map(|r| r["clients"].as_u64()).collect();
    clients.sort_unstable();
    clients.dedup();
    let series = |field: &str| -> Vec<(String, Vec<Option<f64>>)> {
        ["bare", "service"]
            .iter()
            .map(|target| {
                let points = clients
                    .iter()
                    .map(|&n| {
                        runs.iter()
                            .find(|r| r["target"] == *target && r["clients"] == n)
                            .and_then(|r| r[field].as_f64())
                    })
                    .collect();
                (target.to_string(), points)
            })
            .collect()
    };
    let x_labels: Vec<String> = clients.iter().map(u64::to_string).collect();
    Ok(figure(&[
        Panel {
            title: "requests per second (log scale)",
            x_title: "concurrent clients",
            x_labels: x_labels.clone(),
            series: series("throughput"),
            log_y: true,
        },
        Panel {
            title: "p99 latency, ms (log scale)",
            x_title: "concurrent clients",
            x_labels,
            series: series("p99_ms"),
            log_y: true,
        },
    ]))
}

fn format_count(n: u32) -> String {
    match n {
        n if n >= 1_000_000 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// One line chart: categorical x, one line per series.
struct Panel {
    title: &'static str,
    x_title: &'static str,
    x_labels: Vec<String>,
    series: Vec<(String, Vec<Option<f64>>)>,
    log_y: bool,
}

const PANEL_W: f64 = 460.0;
const PANEL_H: f64 = 320.0;
const COLOURS: [&str; 6] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
];

/// Panels side by side in one SVG.
fn figure(panels: &[Panel]) -> String {
    let width = PANEL_W * panels.len() as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{PANEL_H}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for (i, panel) in panels.iter().enumerate() {
        let _ = writeln!(svg, "<g transform=\"translate({},0)\">", PANEL_W * i as f64);
        panel.draw(&mut svg);
        svg.push_str("</g>\n");
    }
    svg.push_str("</svg>\n");
    svg
}

impl Panel {
    fn draw(&self, svg: &mut String) {
        let (left, right, top, bottom) = (60.0, 20.0, 30.0, 80.0);
        let (w, h) = (PANEL_W - left - right, PANEL_H - top - bottom);
        let values: Vec<f64> = self
            .series
            .iter()
            .flat_map(|(_, points)| points.iter().flatten().copied())
            .filter(|v| v.is_finite() && (!self.log_y || *v > 0.0))
            .collect();
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"18\" text-anchor=\"middle\" font-size=\"13\">{}</text>",
            PANEL_W / 2.0,
            self.title
        );
        if values.is_empty() {
            let _ = writeln!(
                svg,
                "<text x=\"{left}\" y=\"{}\">no data</text>",
                top + h / 2.0
            );
            return;
        }
        let max = values.iter().copied().fold(f64::MIN, f64::max);
        let min = values.iter().copied().fold(f64::MAX, f64::min);
        let (y_low, y_high) = if self.log_y {
            (
                min.log10().floor(),
                max.log10().ceil().max(min.log10().floor() + 1.0),
            )
        } else {
            (0.0, nice_ceiling(max))
        };
        let scale = |v: f64| if self.log_y { v.log10() } else { v };
        let y_of = |v: f64| top + h - (scale(v) - y_low) / (y_high - y_low) * h;
        let n = self.x_labels.len().max(1);
        let x_of = |i: usize| left + (i as f64 + 0.5) * w / n as f64;

        // Axes, grid and labels.
        let _ = writeln!(
            svg,
            "<path d=\"M{left},{top} V{} H{}\" stroke=\"black\" fill=\"none\"/>",
            top + h,
            left + w
        );
        let ticks: Vec<f64> = if self.log_y {
            (y_low as i32..=y_high as i32)
                .map(|e| 10f64.powi(e))
                .collect()
        } else {
            (0..=4).map(|k| y_high * f64::from(k) / 4.0).collect()
        };
        for tick in ticks {
            let y = y_of(tick);
            let _ = writeln!(
                svg,
                "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
                 <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                left + w,
                left - 4.0,
                y + 4.0,
                format_tick(tick)
            );
        }
        for (i, label) in self.x_labels.iter().enumerate() {
            let _ = writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
                x_of(i),
                top + h + 14.0
            );
        }
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            left + w / 2.0,
            top + h + 30.0,
            self.x_title
        );

        // One polyline and legend entry per series that has points; a series keeps its
        // colour from panel to panel.
        let mut shown = 0;
        for (k, (name, points)) in self.series.iter().enumerate() {
            if points.iter().all(Option::is_none) {
                continue;
            }
            let colour = COLOURS[k % COLOURS.len()];
            let path: Vec<String> = points
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    v.filter(|v| v.is_finite() && (!self.log_y || *v > 0.0))
                        .map(|v| format!("{:.1},{:.1}", x_of(i), y_of(v)))
                })
                .collect();
            if !path.is_empty() {
                let _ = writeln!(
                    svg,
                    "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>",
                    path.join(" ")
                );
                for point in &path {
                    let (x, y) = point.split_once(',').unwrap_or(("0", "0"));
                    let _ = writeln!(
                        svg,
                        "<circle cx=\"{x}\" cy=\"{y}\" r=\"3\" fill=\"{colour}\"/>"
                    );
                }
            }
            let (lx, ly) = (
                left + (shown % 3) as f64 * 130.0,
                top + h + 48.0 + (shown / 3) as f64 * 14.0,
            );
            shown += 1;
            let _ = writeln!(
                svg,
                "<rect x=\"{lx}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{colour}\"/>\
                 <text x=\"{}\" y=\"{ly}\">{name}</text>",
                ly - 9.0,
                lx + 14.0
            );
        }
    }
}

/// The smallest 1, 2 or 5 times a power of ten at or above `v`.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * power)
}

fn format_tick(v: f64) -> String {
    if v >= 1000.0 {
        format!("{}k", round(v / 1000.0, 1))
    } else if v >= 1.0 {
        format!("{}", round(v, 1))
    } else {
        format!("{}", round(v, 3))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fastest_sample_is_the_least_time_per_call() {
        let dir = tempfile::tempdir().unwrap();
        let sample = dir.path().join("g/f/new");
        std::fs::create_dir_all(&sample).unwrap();
        // 10 calls in 1,000 ns, 20 in 1,600 ns (the fastest: 80 ns), 30 in 3,000 ns.
        std::fs::write(
            sample.join("sample.json"),
            r#"{"iters":[10.0,20.0,30.0],"times":[1000.0,1600.0,3000.0]}"#,
        )
        .unwrap();
        assert_eq!(fastest_ns(dir.path(), "g/f").unwrap(), 80.0);
        assert!(fastest_ns(dir.path(), "g/missing").is_err());
    }

    #[test]
    fn axes_end_on_a_round_value_at_or_above_the_data() {
        assert_eq!(nice_ceiling(23.0), 50.0);
        assert_eq!(nice_ceiling(0.56), 1.0);
        assert_eq!(nice_ceiling(101.0), 200.0);
        assert_eq!(nice_ceiling(100.0), 100.0);
    }
}
