//! A minimal wasmtime host for the request-access plugin, independent of this crate's
//! `Runtime`: it shows the four imports an embedder provides. Run it with
//!
//! ```text
//! cargo run -p request-access-host --example embed
//! ```
//!
//! State is a `BTreeMap` with a revision counter; the registry admits one service; the
//! pool is `+1800555010x`. A real host keeps the state durable and shared.

use std::collections::BTreeMap;

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

wasmtime::component::bindgen!({ path: "../wit", world: "plugin" });

use contact_center::request_access::{
    clock, reservation_state as state, resource_groups as groups, service_registry,
};
use exports::contact_center::request_access::request_access::{CreateRequest, MatchRequest};

#[derive(Default)]
struct Host {
    wasi: Option<WasiCtx>,
    table: ResourceTable,
    revision: u64,
    state: BTreeMap<String, (u64, Vec<u8>)>,
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
    fn is_active(&mut self, id: String) -> Result<bool, service_registry::RegistryError> {
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
}

impl state::Host for Host {
    fn get(&mut self, keys: Vec<String>) -> Result<Vec<Option<state::Entry>>, state::StateError> {
        let entry = |k: String| {
            self.state.get(&k).map(|(revision, value)| state::Entry {
                key: k.clone(),
                value: value.clone(),
                revision: *revision,
            })
        };
        Ok(keys.into_iter().map(entry).collect())
    }
    fn scan(
        &mut self,
        start: String,
        end: String,
        limit: u32,
    ) -> Result<Vec<state::Entry>, state::StateError> {
        let range = self.state.range(start..end).take(limit as usize);
        Ok(range
            .map(|(k, (revision, value))| state::Entry {
                key: k.clone(),
                value: value.clone(),
                revision: *revision,
            })
            .collect())
    }
    fn commit(
        &mut self,
        pre: Vec<state::Precondition>,
        muts: Vec<state::Mutation>,
    ) -> Result<state::CommitOutcome, state::StateError> {
        if let Some(p) = pre
            .into_iter()
            .find(|p| self.state.get(&p.key).map(|(r, _)| *r) != p.revision)
        {
            return Ok(state::CommitOutcome::Conflict(p.key));
        }
        self.revision += 1;
        for m in muts {
            match m {
                state::Mutation::Put((k, v)) => {
                    self.state.insert(k, (self.revision, v));
                }
                state::Mutation::Delete(k) => {
                    self.state.remove(&k);
                }
            }
        }
        Ok(state::CommitOutcome::Committed(self.revision))
    }
}

/// Create a reservation with a code and match it; answers (number, service id).
pub fn run(wasm: &[u8]) -> wasmtime::Result<(String, String)> {
    let engine = Engine::default();
    let mut linker = Linker::<Host>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    Plugin::add_to_linker::<_, HasSelf<Host>>(&mut linker, |h| h)?;
    let mut store = Store::new(&engine, Host::default());
    let plugin = Plugin::instantiate(&mut store, &Component::new(&engine, wasm)?, &linker)?;
    let api = plugin.contact_center_request_access_request_access();

    let request = CreateRequest {
        service_id: "demo-service".into(),
        resource_group: "DNIS".into(),
        provide_code: true,
        phone_number: None,
        booking_expiration_timeout: None,
    };
    let info = api
        .call_create(&mut store, &request)?
        .map_err(|e| wasmtime::format_err!("{e:?}"))?;
    println!(
        "reserved {} with code {:?} for {} s",
        info.access_number, info.access_code, info.expiration_time
    );
    let call = MatchRequest {
        access_number: info.access_number.clone(),
        access_code: info.access_code,
        phone_number: None,
    };
    let matched = api
        .call_match_access(&mut store, &call)?
        .map_err(|e| wasmtime::format_err!("{e:?}"))?;
    println!("matched to {}", matched.service_id);
    Ok((info.access_number, matched.service_id))
}

#[allow(dead_code)] // the tests include this file for `run`
fn main() -> wasmtime::Result<()> {
    run(request_access_host::runtime::PLUGIN_WASM).map(|_| ())
}
