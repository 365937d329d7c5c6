//! A plugin that targets the `plugin` world and misbehaves as its input asks, so the
//! host's sandbox can be tested against each failure. `create`'s service id picks it:
//!
//! | service id    | behaviour                                              |
//! |---------------|--------------------------------------------------------|
//! | `loop`        | spins forever                                          |
//! | `grow`        | allocates memory without bound                         |
//! | `panic`       | panics (a trap)                                        |
//! | `bad-number`  | answers a number outside every pool                    |
//! | `bad-code`    | answers an access code with letters                    |
//! | `short-code`  | answers an access code of the wrong length             |
//! | `past-expiry` | answers an expiry in the past                          |
//! | `unasked-code`| answers a code nobody asked for                        |
//!
//! `placement.place` answers as `create` does, and for two more ids:
//!
//! | service id     | behaviour                                              |
//! |----------------|--------------------------------------------------------|
//! | `other-group`  | says another group than the requested one lent it      |
//! | `far-retry`    | refuses as exhausted, to retry in ten years            |
//!
//! `lease.extend` answers an expiry ten years ahead.
//!
//! `match-access` answers a service id with a line break; `release` answers something
//! that is not a phone number; `pool-status` answers counts that do not add up.

#[cfg(target_arch = "wasm32")]
mod component {
    mod bindings {
        wit_bindgen::generate!({ path: "../../wit", world: "plugin" });
    }

    use bindings::contact_center::request_access::clock;
    use bindings::exports::contact_center::request_access::request_access as wit;
    use bindings::exports::contact_center::request_access::{lease, placement};

    struct Broken;
    bindings::export!(Broken with_types_in bindings);

    impl lease::Guest for Broken {
        fn extend(_: lease::ExtendRequest) -> Result<lease::Extended, wit::Error> {
            Ok(lease::Extended {
                access_number: "+18005550100".into(),
                expiration_time: 30,
                expires_at: clock::now() + 10 * 365 * 86_400_000,
                capped: false,
            })
        }
    }

    impl placement::Guest for Broken {
        fn place(request: wit::CreateRequest) -> Result<placement::Placed, placement::Refused> {
            let resource_group = match request.service_id.as_str() {
                "other-group" => "ELSEWHERE".to_string(),
                "far-retry" => {
                    return Err(placement::Refused {
                        error: wit::Error::NoAccessNumberAvailable(request.resource_group),
                        retry_at: Some(clock::now() + 10 * 365 * 86_400_000),
                    });
                }
                _ => request.resource_group.clone(),
            };
            let access =
                <Broken as wit::Guest>::create(request).map_err(|error| placement::Refused {
                    error,
                    retry_at: None,
                })?;
            Ok(placement::Placed {
                access,
                resource_group,
            })
        }
    }

    impl wit::Guest for Broken {
        fn create(request: wit::CreateRequest) -> Result<wit::AccessInfo, wit::Error> {
            let now = clock::now();
            let mut info = wit::AccessInfo {
                access_number: "+18005550100".into(),
                access_code: request.provide_code.then(|| "123456".into()),
                expiration_time: 30,
                expires_at: now + 30_000,
            };
            match request.service_id.as_str() {
                "loop" => {
                    let mut n: u64 = 0;
                    loop {
                        n = std::hint::black_box(n.wrapping_add(1));
                    }
                }
                "grow" => {
                    let mut hoard: Vec<Vec<u8>> = Vec::new();
                    loop {
                        hoard.push(vec![1u8; 1 << 20]);
                        std::hint::black_box(&hoard);
                    }
                }
                "panic" => panic!("deliberate panic"),
                "bad-number" => info.access_number = "+19999999999".into(),
                "bad-code" => info.access_code = Some("12a456".into()),
                "short-code" => info.access_code = Some("123".into()),
                "past-expiry" => info.expires_at = now.saturating_sub(1_000),
                "unasked-code" => info.access_code = Some("123456".into()),
                _ => {}
            }
            Ok(info)
        }

        fn match_access(_request: wit::MatchRequest) -> Result<wit::Matched, wit::Error> {
            // A malformed id: the host checks a match's answer for its form only (the
            // reservation may predate the configuration, so its group may be gone).
            Ok(wit::Matched {
                service_id: "intruder\n".into(),
                resource_group: "NO-SUCH-GROUP".into(),
            })
        }

        fn release(_service_id: String, _group: String) -> Result<String, wit::Error> {
            Ok("not a number".into())
        }

        fn pool_status(_group: String) -> Result<wit::PoolOccupancy, wit::Error> {
            Ok(wit::PoolOccupancy {
                size: 10,
                live: 7,
                free: 7,
            })
        }
    }
}
