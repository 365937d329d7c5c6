//! Plain Rust mirrors of the WIT types, so the logic compiles and runs natively.
//!
//! The component shell (`component.rs`) converts between these and the generated bindings;
//! a native embedder (the host's baseline, its tests) implements [`Imports`] directly.

/// Milliseconds since the Unix epoch, UTC.
pub type Instant = u64;

/// The seed's Create request (`request-access.create-request`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRequest {
    pub service_id: String,
    pub resource_group: String,
    pub provide_code: bool,
    pub phone_number: Option<String>,
    pub booking_expiration_timeout: Option<u32>,
}

/// Access information reserved for a service (`request-access.access-info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessInfo {
    pub access_number: String,
    pub access_code: Option<String>,
    pub expiration_time: u32,
    pub expires_at: Instant,
}

/// The `match-interaction` request (`request-access.match-request`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchRequest {
    pub access_number: String,
    pub access_code: Option<String>,
    pub phone_number: Option<String>,
}

/// The reservation a call was matched to (`request-access.matched`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub service_id: String,
    pub resource_group: String,
}

/// Occupancy of one group (`request-access.pool-status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    pub size: u32,
    pub live: u32,
    pub free: u32,
}

/// Why a call failed (`types.error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    InvalidParameter { field: String, reason: String },
    ServiceNotActive(String),
    UnknownResourceGroup(String),
    NoAccessNumberAvailable(String),
    NoMatch,
    TooManyAttempts,
    RegistryFailure(String),
    StateStoreFailure(String),
}

impl Error {
    pub(crate) fn invalid(field: &str, reason: impl Into<String>) -> Self {
        Error::InvalidParameter {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::InvalidParameter { field, reason } => write!(f, "invalid {field}: {reason}"),
            Error::ServiceNotActive(id) => write!(f, "service {id:?} is not active"),
            Error::UnknownResourceGroup(g) => write!(f, "unknown resource group {g:?}"),
            Error::NoAccessNumberAvailable(g) => {
                write!(f, "no access number available in resource group {g:?}")
            }
            Error::NoMatch => f.write_str("no reservation matches"),
            Error::TooManyAttempts => {
                f.write_str("too many wrong access codes: the reservation was revoked")
            }
            Error::RegistryFailure(why) => write!(f, "service registry failure: {why}"),
            Error::StateStoreFailure(why) => write!(f, "state store failure: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// How a group chooses among its free numbers (`resource-groups.strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    RoundRobin,
    Random,
}

/// Global options (`resource-groups.options`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub access_code_length: u8,
    pub booking_expiration_timeout: u32,
    pub max_code_attempts: u32,
}

/// One resource group (`resource-groups.group`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub strategy: Strategy,
    pub booking_expiration_timeout: Option<u32>,
    pub size: u32,
    pub pool_id: u64,
}

/// A stored key (`reservation-state.entry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: Vec<u8>,
    pub revision: u64,
}

/// A commit precondition (`reservation-state.precondition`): `None` means "absent".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Precondition {
    pub key: String,
    pub revision: Option<u64>,
}

/// One change (`reservation-state.mutation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    Put(String, Vec<u8>),
    Delete(String),
}

/// What a commit did (`reservation-state.commit-outcome`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed(u64),
    Conflict(String),
}

/// The imports of the `plugin` world, as the logic sees them. Store and registry
/// failures arrive as their message; the logic maps them to [`Error`].
pub trait Imports {
    /// `clock.now`.
    fn now(&mut self) -> Instant;
    /// `service-registry.is-active`.
    fn is_active(&mut self, service_id: &str) -> Result<bool, String>;
    /// `resource-groups.options`.
    fn options(&mut self) -> Options;
    /// `resource-groups.group`.
    fn group(&mut self, name: &str) -> Option<Group>;
    /// `resource-groups.number-at`.
    fn number_at(&mut self, group: &str, index: u32) -> Option<String>;
    /// `resource-groups.index-of`.
    fn index_of(&mut self, group: &str, number: &str) -> Option<u32>;
    /// `reservation-state.get`.
    fn get(&mut self, keys: &[String]) -> Result<Vec<Option<Entry>>, String>;
    /// `reservation-state.scan`.
    fn scan(&mut self, start: &str, end: &str, limit: u32) -> Result<Vec<Entry>, String>;
    /// `reservation-state.commit`.
    fn commit(
        &mut self,
        preconditions: Vec<Precondition>,
        mutations: Vec<Mutation>,
    ) -> Result<CommitOutcome, String>;
}
