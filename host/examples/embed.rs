//! A minimal wasmtime host for the request-access plugin, independent of this crate's
//! `Runtime`: it shows the four imports an embedder provides, on the generated bindings
//! of `request_access_host::bindings`. Run it with
//!
//! ```text
//! cargo run -p request-access-host --example embed
//! ```
//!
//! The bindings are asynchronous: `reservation-state` and `service-registry` are `async`
//! host functions (a real store awaits its disk or network there) and the exports are
//! `async` calls; a `Store` of an engine with async support runs the guest on a fiber.
//! Here every import answers at once.
//!
//! State is the contract's in-memory reference (`request_access_state::RevisionedMap`);
//! the registry admits one service; the pool is `+1800555010x`. A real host keeps the
//! state durable and shared.

use request_access_host::api;
use request_access_host::bindings::Plugin;
use request_access_host::bindings::contact_center::request_access::{
    clock, reservation_state as state, resource_groups as groups, service_registry,
};
use request_access_host::bindings::exports::contact_center::request_access::lease::ExtendRequest;
use request_access_host::bindings::exports::contact_center::request_access::request_access::{
    CreateRequest, MatchRequest,
};
use request_access_host::bindings::{each, each_present};
use request_access_state::RevisionedMap;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// What `scan` answers.
type Entries = Result<Vec<state::Entry>, state::StateError>;

#[derive(Default)]
struct Host {
    wasi: Option<WasiCtx>,
    table: ResourceTable,
    state: RevisionedMap,
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: self.wasi.get_or_insert_with(WasiCtx::default),
            table: &mut self.table,
        }
    }
}

impl clock::Host for Host {
    fn now(&mut self) -> u64 {
        1_767_225_600_000 // 2026-01-01T00:00:00Z: a real host reads the wall clock
    }
}

impl service_registry::Host for Host {
    async fn is_active(&mut self, id: String) -> Result<bool, service_registry::RegistryError> {
        Ok(id == "demo-service")
    }
}

impl groups::Host for Host {
    fn options(&mut self) -> groups::GlobalOptions {
        groups::GlobalOptions {
            access_code_length: 6,
            booking_expiration_timeout: 30,
            max_code_attempts: 5,
        }
    }
    fn group(&mut self, name: String) -> Option<groups::GroupInfo> {
        (name == "DNIS").then_some(groups::GroupInfo {
            name,
            strategy: groups::Strategy::RoundRobin,
            booking_expiration_timeout: None,
            size: 10,
            pool_id: 1,
        })
    }
    fn number_at(&mut self, _group: String, index: u32) -> Option<String> {
        (index < 10).then(|| format!("+1800555010{index}"))
    }
    fn index_of(&mut self, _group: String, number: String) -> Option<u32> {
        number
            .strip_prefix("+1800555010")?
            .parse()
            .ok()
            .filter(|i| *i < 10)
    }
    fn policy(&mut self, name: String) -> Option<groups::GroupPolicy> {
        // A number rests a minute after its reservation ends; late calls match for 10 s.
        (name == "DNIS").then_some(groups::GroupPolicy {
            reuse_cooldown: 60,
            match_grace: 10,
            fallback_group: None,
            sticky_memory: 0,
            reservations_per_number: 1,
            wrong_code_limit: 0,
            wrong_code_window: 0,
            prefer_caller_prefix: 0,
        })
    }
    fn lease_policy(&mut self, name: String) -> Option<groups::GroupLease> {
        // A reservation may be extended up to an hour from its create; a match ends it.
        (name == "DNIS").then_some(groups::GroupLease {
            max_lifetime: 3600,
            sliding_expiry: false,
        })
    }
}

impl state::Host for Host {
    async fn get(
        &mut self,
        keys: Vec<String>,
    ) -> Result<Vec<Option<state::Entry>>, state::StateError> {
        let entries = self.state.get(&keys).map_err(state::StateError::Refused)?;
        Ok(each_present(entries))
    }
    async fn scan(&mut self, start: String, end: String, limit: u32) -> Entries {
        Ok(each(self.state.scan(&start, &end, limit)))
    }
    async fn read(
        &mut self,
        keys: Vec<String>,
        ranges: Vec<state::KeyRange>,
    ) -> Result<state::Snapshot, state::StateError> {
        let ranges: Vec<api::KeyRange> = each(ranges);
        let snapshot = self.state.read(&keys, &ranges);
        snapshot.map(Into::into).map_err(state::StateError::Refused)
    }
    async fn commit(
        &mut self,
        pre: Vec<state::Precondition>,
        muts: Vec<state::Mutation>,
    ) -> Result<state::CommitOutcome, state::StateError> {
        let (pre, muts): (Vec<api::Precondition>, Vec<api::Mutation>) = (each(pre), each(muts));
        self.state
            .commit(&pre, &muts)
            .map(Into::into)
            .map_err(state::StateError::Refused)
    }
    async fn commit_recorded(
        &mut self,
        pre: Vec<state::Precondition>,
        muts: Vec<state::Mutation>,
        events: Vec<state::Event>,
    ) -> Result<state::CommitOutcome, state::StateError> {
        // What happened to reservations: this host prints it, once committed.
        let outcome = self.commit(pre, muts).await?;
        if let state::CommitOutcome::Committed(_) = outcome {
            for event in &events {
                println!("event: {:?} {}", event.kind, event.access_number);
            }
        }
        Ok(outcome)
    }
}

/// Create a reservation with a code and match it; answers (number, service id).
pub fn run(wasm: &[u8]) -> wasmtime::Result<(String, String)> {
    tokio::runtime::Builder::new_current_thread()
        .build()?
        .block_on(create_and_match(wasm))
}

async fn create_and_match(wasm: &[u8]) -> wasmtime::Result<(String, String)> {
    let engine = Engine::default();
    let mut linker = Linker::<Host>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    Plugin::add_to_linker::<_, HasSelf<Host>>(&mut linker, |h| h)?;
    let mut store = Store::new(&engine, Host::default());
    let component = Component::new(&engine, wasm)?;
    let plugin = Plugin::instantiate_async(&mut store, &component, &linker).await?;
    let api = plugin.contact_center_request_access_request_access();

    let request = CreateRequest {
        service_id: "demo-service".into(),
        resource_group: "DNIS".into(),
        provide_code: true,
        phone_number: None,
        booking_expiration_timeout: None,
    };
    let info = api
        .call_create(&mut store, &request)
        .await?
        .map_err(|e| wasmtime::format_err!("{e:?}"))?;
    println!(
        "reserved {} with code {:?} for {} s",
        info.access_number, info.access_code, info.expiration_time
    );
    // The page is still open: keep the number two more minutes (a heartbeat).
    let extended = plugin
        .contact_center_request_access_lease()
        .call_extend(
            &mut store,
            &ExtendRequest {
                service_id: "demo-service".into(),
                resource_group: "DNIS".into(),
                booking_expiration_timeout: Some(120),
            },
        )
        .await?
        .map_err(|e| wasmtime::format_err!("{e:?}"))?;
    println!(
        "extended {} for {} s",
        extended.access_number, extended.expiration_time
    );
    let call = MatchRequest {
        access_number: info.access_number.clone(),
        access_code: info.access_code,
        phone_number: None,
    };
    let matched = api
        .call_match_access(&mut store, &call)
        .await?
        .map_err(|e| wasmtime::format_err!("{e:?}"))?;
    println!("matched to {}", matched.service_id);
    Ok((info.access_number, matched.service_id))
}

#[allow(dead_code)] // the tests include this file for `run`
fn main() -> wasmtime::Result<()> {
    run(request_access_host::runtime::PLUGIN_WASM).map(|_| ())
}
