//! The pools as operators see them: `/admin/pools` (occupancy and sizing) and
//! `/admin/overview` (what the operator's page draws). Reading the pools also refreshes
//! their gauges and this node's history.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use request_access_guest::validate;
use request_access_wire::answer;
use serde_json::{Value, json};

use super::{Answer, AppState, authorize, detached};
use crate::api::PoolStatus;
use crate::http::error::ApiError;
use crate::http::sizing::{self, Sizing};
use crate::runtime::CallError;

/// `group`'s sizing from this node's history at `now`, if it has enough of it.
fn sizing_of(app: &AppState, group: &str, now: u64) -> Option<Sizing> {
    let services = app.runtime.services();
    let config = services.config.group(group)?;
    let pool = sizing::Pool {
        size: config.pool.size(),
        seats: config.policy.seats(),
        rest_seconds: config.policy.reuse_cooldown.max(config.policy.match_grace),
        default_lease: validate::lease_seconds(
            None,
            config.booking_expiration_timeout,
            services.config.options.booking_expiration_timeout,
        ),
    };
    let points = app.history.points(group, now);
    sizing::size(&points, pool, services.config.blocking_target, now)
}

/// Occupancy of every group; also refreshes the pool gauges and the page's history.
async fn pool_statuses(app: &AppState) -> Result<Vec<(String, PoolStatus)>, ApiError> {
    let names: Vec<String> = app
        .runtime
        .services()
        .config
        .groups
        .iter()
        .map(|g| g.name.clone())
        .collect();
    let runtime = app.runtime.clone();
    let statuses = detached(async move {
        let mut statuses = Vec::with_capacity(names.len());
        for name in names {
            let status = runtime.pool_status(&name).await?;
            statuses.push((name, status));
        }
        Ok::<_, CallError>(statuses)
    })
    .await?;
    let now = app.runtime.services().clock.now_ms();
    for (name, s) in &statuses {
        app.metrics.set_pool(name, s.size, s.live);
        app.history
            .counted(name, answer::utilisation(s.size, s.live) as f32, now);
        if let Some(sizing) = sizing_of(app, name, now) {
            app.metrics.set_sizing(name, &sizing);
        }
    }
    Ok(statuses)
}

/// Occupancy of every group, as `/admin/pools` answers it, each with its sizing on this
/// node (`null` until it has a minute of history).
pub(super) async fn pools(app: &AppState) -> Result<Value, ApiError> {
    let statuses = pool_statuses(app).await?;
    let mut answer = answer::groups(statuses.iter().map(|(name, s)| (name.as_str(), *s)));
    let now = app.runtime.services().clock.now_ms();
    if let Some(groups) = answer["groups"].as_array_mut() {
        for (group, (name, _)) in groups.iter_mut().zip(&statuses) {
            group["sizing"] = json!(sizing_of(app, name, now));
        }
    }
    Ok(answer)
}

pub(in crate::http) async fn pool_health(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Answer {
    authorize(&app, &headers)?;
    pools(&app).await.map(Json)
}

/// What the operator's page draws: every group with its occupancy, configuration and
/// this node's last hour, the plugin, the store, and the active services. Never a
/// reservation, an access code or a caller's number.
pub(in crate::http) async fn overview(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Answer {
    authorize(&app, &headers)?;
    let statuses = pool_statuses(&app).await?;
    let services = app.runtime.services();
    let now = services.clock.now_ms();
    let groups: Vec<Value> = statuses
        .iter()
        .map(|(name, status)| {
            let mut group = json!({
                "name": name,
                "history": app.history.points(name, now),
                "sizing": sizing_of(&app, name, now),
            });
            if let Some(config) = services.config.group(name) {
                group["strategy"] = json!(config.strategy.name());
                group["booking_expiration_timeout"] = json!(config.booking_expiration_timeout);
                group["reservations_per_number"] = json!(config.policy.seats());
            }
            if let (Value::Object(group), Value::Object(health)) =
                (&mut group, answer::pool_health(status))
            {
                group.extend(health);
            }
            group
        })
        .collect();

    let started = std::time::Instant::now();
    let probe = services.store_answers().await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let listing = services.clone();
    let active = detached(async move { listing.registry.list().await }).await?;
    let plugin = app.runtime.plugin();
    let stats = app.runtime.stats();
    let seconds_since_epoch = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    Ok(Json(json!({
        "now": now / 1000,
        "groups": groups,
        "plugin": {
            "digest": plugin.digest(),
            "loaded_at": seconds_since_epoch(plugin.loaded_at()),
            "reloads": stats.reloads,
            "faults": stats.faults,
            "instantiations": stats.instantiations,
            "idle_instances": stats.idle_instances,
            "max_idle_instances": app.runtime.limits().max_idle_instances,
            "peak_guest_memory_bytes": stats.peak_guest_memory_bytes,
        },
        "store": {
            "kind": services.store.kind(),
            "healthy": probe.is_ok(),
            "error": probe.err().map(|e| e.to_string()),
            "latency_ms": latency_ms,
        },
        "services": active.iter().map(|e| json!({
            "id": e.service_id,
            "static": e.static_entry,
            "ttl_seconds": e.expires_at.map(|at| at.saturating_sub(now).div_ceil(1000)),
        })).collect::<Vec<_>>(),
    })))
}
