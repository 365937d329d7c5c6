//! `breakdown`: where a request's CPU goes, from a `perf` profile of the service.
//!
//! It reads `perf report --no-children -F sample,dso,sym --stdio -q -g none` (self
//! samples per symbol), puts each symbol in one part of the service (HTTP and the wire
//! format, the async runtime, the runtime's check-out, wasmtime's host crossings, the
//! host's imports, the plugin's own code, the durable store, logging, metrics, the
//! allocator, the kernel's network, disk and scheduling work, ...) and turns each part's
//! share of the samples into microseconds per request, given the CPU time the process
//! used and the requests it answered over the profile:
//!
//! ```text
//! target/release/breakdown --report perf.txt --cpu-seconds 9.8 --requests 41234
//! ```
//!
//! stdout gets one JSON object (`{"cpu_us_per_request":..,"parts":[{"part":..,
//! "us_per_request":..,"share":..,"top":[..]},..]}`, the parts summing to the total);
//! stderr a table. `bench/profile` runs the whole thing against `request-access serve`.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "breakdown",
    about = "Microseconds per request by part of the service, from a perf report"
)]
struct Cli {
    /// The output of `perf report --no-children -F sample,dso,sym --stdio -q -g none`.
    #[arg(long)]
    report: PathBuf,
    /// CPU seconds (user + system) the profiled process used over the profile.
    #[arg(long)]
    cpu_seconds: f64,
    /// Requests the process answered over the profile.
    #[arg(long)]
    requests: u64,
}

/// The parts, in the order a symbol is tried against them: the first part one of whose
/// markers occurs in the symbol (or, for markers starting with `dso:`, begins the shared
/// object's name) takes its samples; kernel symbols are tried against the `kernel:` parts
/// only, and the others against the rest. A marker starting with `=` is a whole symbol. Crate names are matched as `name::` so that a
/// generic function is charged to the crate whose code it is (`<hyper::.. as
/// tokio::..>` goes to hyper, which comes first).
const PARTS: &[(&str, &[&str])] = &[
    (
        "host crossings (wasmtime: calls, lift/lower, fibers, trampolines)",
        &[
            "trampoline",
            "wasmtime",
            "cranelift",
            "request_access_host::bindings",
            "wasmtime_wasi::",
        ],
    ),
    // The rest of the compiled code: the plugin's functions (named by wasmtime's perf map,
    // its Rust names mangled), its CSPRNG and copies included.
    (
        "plugin code (guest, compiled wasm)",
        &["dso:[JIT]", "dso:perf-", "wasm["],
    ),
    (
        "instance check-out and the call's set-up (runtime/instances.rs)",
        &["request_access_host::runtime::"],
    ),
    (
        "host imports: registry, groups, state calls (services.rs, state crate)",
        &[
            "request_access_host::services::",
            "request_access_state::",
            "request_access_host::registry::",
            "request_access_host::clock::",
        ],
    ),
    (
        "durable store (redb: commit, read, page cache)",
        &["redb::", "request_access_host::store::"],
    ),
    (
        "logging (tracing)",
        &[
            "tracing_subscriber::",
            "tracing_core::",
            "tracing::",
            "sharded_slab::",
            "nu_ansi_term::",
            "tower_http::trace",
        ],
    ),
    (
        "metrics (prometheus-client)",
        &["prometheus_client::", "request_access_host::http::metrics"],
    ),
    (
        "HTTP and the wire format (hyper, axum, tower, forms, JSON)",
        &[
            "hyper::",
            "hyper_util::",
            "axum::",
            "axum_core::",
            "http::",
            "http_body",
            "httparse::",
            "tower::",
            "tower_http::",
            "tower_layer::",
            "form_urlencoded::",
            "serde_urlencoded::",
            "serde_json::",
            "serde::",
            "serde_core::",
            "request_access_wire::",
            "matchit::",
            "percent_encoding::",
            "bytes::",
            "itoa::",
            "ryu::",
            "mime::",
            "request_access_host::http::",
            "httpdate::",
            "uuid::",
        ],
    ),
    (
        "async runtime (tokio: scheduling, timers, wake-ups, mio)",
        &[
            "tokio::",
            "mio::",
            "futures_util::",
            "futures_core::",
            "futures_channel::",
            "parking_lot",
            "crossbeam",
        ],
    ),
    (
        "allocator and memory copies (mimalloc, libc malloc/free, memcpy)",
        &[
            "malloc",
            "mi_free",
            "_mi_",
            "mi_heap_",
            "mi_page_",
            "mi_theap_",
            "_int_free",
            "=free",
            "cfree",
            "__libc_free",
            "realloc",
            "memcpy",
            "memmove",
            "memset",
            "calloc",
            "tcache",
            "unlink_chunk",
            "alloc::alloc::",
            "__rust_alloc",
            "__rust_dealloc",
            "__rust_realloc",
            "__rdl_",
            "alloc::raw_vec::",
        ],
    ),
    (
        "CSPRNG and hashing (access codes, digests, hash maps)",
        &[
            "rand::",
            "rand_core::",
            "rand_chacha::",
            "chacha",
            "getrandom",
            "sha2::",
            "hashbrown::",
            "ahash::",
            "foldhash::",
            "core::hash::",
            "std::hash::",
        ],
    ),
    (
        "kernel: disk (fsync, ext4, journal, block layer)",
        &[
            "fsync",
            "ext4",
            "jbd2",
            "blk_",
            "bio_",
            "nvme",
            "virtblk",
            "virtio_queue",
            "filemap",
            "file_write_and_wait",
            "writeback",
            "iomap",
            "pwrite",
            "vfs_write",
            "mpage",
            "folio",
            "page_cache",
        ],
    ),
    (
        "kernel: network (loopback TCP, sockets, epoll)",
        &[
            "tcp_",
            "ip_",
            "ipv4",
            "__ip",
            "net_",
            "netif",
            "skb",
            "sock",
            "__sys_send",
            "__sys_recv",
            "sendto",
            "recvfrom",
            "loopback",
            "epoll",
            "ep_",
            "inet_",
            "__dev_queue",
            "dev_hard",
            "napi",
            "do_softirq",
            "__softirq",
            "process_backlog",
            "dst_",
            "nf_",
            "lock_sock",
            "release_sock",
            "__x64_sys_write",
            "__x64_sys_read",
            "ksys_write",
            "ksys_read",
        ],
    ),
    (
        "kernel: scheduling and futexes (thread wake-ups, context switches)",
        &[
            "futex",
            "schedule",
            "__switch_to",
            "finish_task_switch",
            "try_to_wake_up",
            "enqueue",
            "dequeue",
            "update_curr",
            "pick_next",
            "select_task",
            "ttwu",
            "psi_",
            "sched",
            "cpuidle",
            "hrtimer",
            "tick_",
            "timerqueue",
        ],
    ),
    (
        "kernel: system calls' entry and exit, other kernel work",
        &["dso:[kernel"],
    ),
    (
        "libc, std and the clock: other (memcmp, locks, threads, clock_gettime, collections)",
        &[
            "dso:libc",
            "dso:[vdso]",
            "std::",
            "core::",
            "alloc::",
            "pthread",
            "__lll_lock",
            "__GI_",
        ],
    ),
];

const OTHER: &str = "other (unattributed symbols of the service binary)";

fn part_of(dso: &str, symbol: &str) -> &'static str {
    let in_kernel = dso.starts_with("[kernel");
    for (part, markers) in PARTS {
        if part.starts_with("kernel:") != in_kernel {
            continue;
        }
        let hit = markers.iter().any(|marker| {
            if let Some(dso_marker) = marker.strip_prefix("dso:") {
                dso.starts_with(dso_marker)
            } else if let Some(exact) = marker.strip_prefix('=') {
                symbol == exact
            } else {
                symbol.contains(marker)
            }
        });
        if hit {
            return part;
        }
    }
    OTHER
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.requests == 0 || cli.cpu_seconds.is_nan() || cli.cpu_seconds <= 0.0 {
        bail!("--requests and --cpu-seconds must be positive");
    }
    let text = std::fs::read_to_string(&cli.report)
        .with_context(|| format!("cannot read {}", cli.report.display()))?;
    let mut samples: HashMap<&str, u64> = HashMap::new();
    let mut top: HashMap<&str, Vec<(u64, String)>> = HashMap::new();
    let mut total = 0u64;
    for line in text.lines() {
        // `count dso [.] symbol`; compiled code's dso is `[JIT] tid`.
        let mut fields = line.split_whitespace();
        let (Some(count), Some(dso)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Ok(count) = count.parse::<u64>() else {
            continue;
        };
        let mut fields = fields.skip_while(|field| !matches!(*field, "[.]" | "[k]"));
        if fields.next().is_none() {
            continue;
        }
        let symbol = fields.collect::<Vec<_>>().join(" ");
        let part = part_of(dso, &symbol);
        *samples.entry(part).or_default() += count;
        top.entry(part)
            .or_default()
            .push((count, format!("{dso} {symbol}")));
        total += count;
    }
    if total == 0 {
        bail!(
            "{}: no samples (is it `perf report -F sample,dso,sym` output?)",
            cli.report.display()
        );
    }
    let cpu_us = cli.cpu_seconds * 1e6 / cli.requests as f64;
    let mut parts: Vec<_> = samples.into_iter().collect();
    parts.sort_by_key(|part| std::cmp::Reverse(part.1));
    eprintln!(
        "breakdown: {total} samples, {cpu_us:.1} µs of CPU per request ({} requests)",
        cli.requests
    );
    eprintln!("{:>8} {:>6}  part", "µs/req", "share");
    let mut rows = Vec::new();
    for (part, count) in &parts {
        let share = *count as f64 / total as f64;
        let mut symbols = top.remove(part).unwrap_or_default();
        symbols.sort_by_key(|symbol| std::cmp::Reverse(symbol.0));
        let top: Vec<_> = symbols
            .iter()
            .take(5)
            .map(|(n, s)| json!({ "symbol": s, "share": round(*n as f64 / total as f64, 4) }))
            .collect();
        eprintln!("{:>8.1} {:>5.1}%  {part}", share * cpu_us, share * 100.0);
        rows.push(json!({
            "part": part,
            "us_per_request": round(share * cpu_us, 2),
            "share": round(share, 4),
            "top": top,
        }));
    }
    println!(
        "{}",
        json!({
            "cpu_us_per_request": round(cpu_us, 2),
            "requests": cli.requests,
            "cpu_seconds": round(cli.cpu_seconds, 3),
            "samples": total,
            "parts": rows,
        })
    );
    Ok(())
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_go_to_the_part_whose_code_they_are() {
        assert_eq!(
            part_of(
                "[JIT]",
                "_ZN20request_access_guest7service4lend17h090cdebf992fdf05E"
            ),
            PARTS[1].0
        );
        assert_eq!(
            part_of("[JIT]", "wasm[0]::array_to_wasm_trampoline[281]"),
            PARTS[0].0
        );
        assert_eq!(
            part_of("request-access", "wasmtime::runtime::fiber::resume_fiber"),
            PARTS[0].0
        );
        assert_eq!(
            part_of(
                "request-access",
                "<hyper::proto::h1::role::Server as hyper::proto::h1::Http1Transaction>::parse"
            ),
            PARTS[7].0
        );
        assert_eq!(
            part_of("request-access", "redb::tree_store::btree::Btree<K,V>::get"),
            PARTS[4].0
        );
        // glibc's allocator and mimalloc's (the service's `#[global_allocator]`).
        for (dso, symbol) in [
            ("libc.so.6", "_int_malloc"),
            ("request-access", "_mi_page_malloc_zero"),
            ("request-access", "mi_free"),
            ("request-access", "mi_page_queue_find_free_ex"),
        ] {
            assert_eq!(part_of(dso, symbol), PARTS[9].0, "{symbol}");
        }
        assert_eq!(
            part_of("[kernel.kallsyms]", "tcp_sendmsg_locked"),
            PARTS[12].0
        );
        assert_eq!(part_of("[kernel.kallsyms]", "ext4_sync_file"), PARTS[11].0);
        assert_eq!(
            part_of("[kernel.kallsyms]", "entry_SYSCALL_64"),
            PARTS[14].0
        );
        assert_eq!(part_of("[kernel.kallsyms]", "kfree"), PARTS[14].0);
        assert_eq!(part_of("request-access", "0x00000000001234"), OTHER);
    }
}
