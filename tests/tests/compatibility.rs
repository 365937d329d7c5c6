//! A plugin built against the released 0.1.0 contract keeps loading and serving on this
//! host: the contract grew by semver-compatible 0.1.1 additions (the import
//! `resource-groups.policy`, which wasmtime's linker matches to the 0.1.0 imports the
//! plugin names; the export `placement`, which the host uses only when it is there). The
//! plugin is this source built with the guest's `released-wit` feature: the contract is
//! what differs, and a plugin of that contract cannot ask for a group's policy.

use std::sync::Arc;

use request_access_host::api::Error;
use request_access_host::runtime::{CallError, PluginImage};
use request_access_tests::*;

const COOLED: &str = "[options]\nreuse_cooldown = 60\n\
                      [[resource_group]]\nname = \"G\"\nnumbers = [\"5551000..5551001\"]\n\
                      [registry]\nservices = [\"a\", \"b\", \"c\"]\n";

fn released() -> Arc<PluginImage> {
    PluginImage::new(RELEASED_WIT_PLUGIN_WASM).expect("the 0.1.0 plugin loads")
}

#[test]
fn the_released_plugin_names_the_released_contract() {
    let (imports, exports) = released().interface();
    assert_eq!(
        exports,
        ["contact-center:request-access/request-access@0.1.0"]
    );
    assert!(
        imports
            .iter()
            .any(|i| i == "contact-center:request-access/resource-groups@0.1.0"),
        "{imports:?}"
    );
    assert!(!imports.iter().any(|i| i.contains("@0.1.1")), "{imports:?}");
}

#[test]
fn a_plugin_built_against_the_released_contract_serves_on_this_host() {
    let h = Harness::new(COOLED);
    h.runtime.reload(released());
    let info = h.runtime.create(&create_with_code("a", "G")).unwrap();
    assert_eq!(info.access_number, "5551000");
    let code = info.access_code.unwrap();
    let matched = h
        .runtime
        .match_access(&match_with_code("5551000", &code))
        .unwrap();
    assert_eq!(matched.service_id, "a");
    // It knows no cool-off (it cannot ask for one): the number comes back at once.
    assert_eq!(h.runtime.pool_status("G").unwrap().free, 2);
    assert_eq!(
        h.runtime.create(&create("b", "G")).unwrap().access_number,
        "5551001"
    );
    assert_eq!(
        h.runtime.create(&create("c", "G")).unwrap().access_number,
        "5551000"
    );
    // Without `placement`, the host answers the requested group and, for an
    // exhausted pool, no retry instant (the default advice applies).
    assert_eq!(h.runtime.release("c", "G"), Ok("5551000".into()));
    let placed = h.runtime.create_placed(&create("a", "G")).unwrap();
    assert_eq!(placed.resource_group, "G");
    let refusal = h.runtime.create_placed(&create("c", "G")).unwrap_err();
    assert_eq!(
        refusal.error,
        CallError::Service(Error::NoAccessNumberAvailable("G".into()))
    );
    assert_eq!(refusal.retry_at, None);
    // It exports no `lease`: the host says it cannot extend, and changes nothing.
    let before = h.snapshot();
    assert!(matches!(
        h.runtime.extend(&extend("a", "G", 60)),
        Err(CallError::Unsupported(why)) if why.contains("lease")
    ));
    assert_eq!(h.snapshot(), before);
    assert_eq!(h.runtime.stats().faults, 0);
}

#[test]
fn swapping_between_the_released_and_the_current_plugin_keeps_every_reservation() {
    let h = Harness::new(COOLED);
    h.runtime.reload(released());
    let a = h.runtime.create(&create_with_code("a", "G")).unwrap();
    h.runtime.reload(image());
    // The current plugin reads what the released one stored, and rests what ends.
    let matched = h
        .runtime
        .match_access(&match_with_code(
            &a.access_number,
            a.access_code.as_deref().unwrap(),
        ))
        .unwrap();
    assert_eq!(matched.service_id, "a");
    let b = h.runtime.create(&create("b", "G")).unwrap();
    assert_ne!(b.access_number, a.access_number, "the matched number rests");
    assert_eq!(
        h.runtime.create(&create("c", "G")),
        Err(CallError::Service(Error::NoAccessNumberAvailable(
            "G".into()
        )))
    );
    // And back: the released plugin serves the current one's reservations.
    h.runtime.reload(released());
    assert_eq!(h.runtime.release("b", "G"), Ok(b.access_number));
    assert_eq!(h.runtime.stats().faults, 0);
}
