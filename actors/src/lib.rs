//! Domain types, the sled store and the actors that own each kind of ucca-auth state.
//!
//! Nothing here knows about HTTP. The web crate validates requests, sends the
//! messages defined here, and turns the typed replies into responses. Every sled
//! tree is written by exactly one actor; single use and counting rely on the
//! store's compare-and-swap, never on mailbox order, so each actor kind runs as
//! a pool of synchronous workers.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod apikeys;
pub mod billing;
pub mod catalog;
pub mod clients;
pub mod clock;
pub mod codec;
pub mod codes;
pub mod corpus;
pub mod entitlements;
pub mod export;
pub mod mailer;
pub mod oauth;
pub mod phone;
pub mod quotas;
pub mod ratelimit;
pub mod secret;
pub mod services;
pub mod sms;
pub mod store;
pub mod sweeper;
pub mod tokens;
pub mod usage;

pub use clock::{Clock, ManualClock, SystemClock, UnixTime};
pub use services::{Services, ServicesConfig, SweeperHandle};
pub use store::{Store, StoreError};
