//! kmsd: a self-hosted key management daemon. See `ARCHITECTURE.md` for the map of these modules.
#![forbid(unsafe_code)]

/// The gRPC API, generated from `proto/kms/v1/kms.proto`.
pub mod proto {
    tonic::include_proto!("kms.v1");

    /// The encoded descriptor set of `proto/`, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/kms_descriptor.bin"));
}

pub mod canonical;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "client")]
pub mod envelope;
#[cfg(feature = "objects")]
pub mod objects;
#[cfg(feature = "client")]
pub mod policy;

#[cfg(feature = "server")]
pub mod audit;
#[cfg(feature = "server")]
pub mod auth;
#[cfg(feature = "server")]
pub mod clock;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod crypto;
#[cfg(feature = "server")]
pub mod keys;
#[cfg(feature = "server")]
pub mod kms;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod rpc;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod service;
#[cfg(feature = "server")]
pub mod storage;
