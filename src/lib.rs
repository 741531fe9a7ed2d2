//! kmsd: a self-hosted key management daemon. See `ARCHITECTURE.md` for the map of these modules.
#![forbid(unsafe_code)]

/// The gRPC API (generated, in the `kmsd-proto` crate); the daemon's code names its types `pb::X`.
pub(crate) use kmsd_proto::pb as proto;

pub mod audit;
pub mod auth;
pub mod aws;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod keys;
pub mod kms;
pub mod metrics;
pub mod replica;
pub mod rpc;
pub mod server;
pub mod service;
pub mod storage;
