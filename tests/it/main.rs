//! Integration tests: each starts a real kmsd on 127.0.0.1:0 with its own temporary data directory and talks to
//! it the way users do (the generated gRPC client, kmsctl).

// Tests fail loudly; unwrap is how they say so.
#![allow(clippy::unwrap_used)]

mod access;
mod access_cli;
mod archive;
mod audit;
mod audit_cli;
mod audit_failure;
mod audit_query;
mod audit_tamper;
mod aws;
mod aws_signer;
mod backup;
mod bench;
mod bootstrap;
mod cache;
mod call_path;
mod cli;
mod client;
mod concurrency;
mod config;
mod crypto_ops;
mod disk_full;
mod envelope;
mod fuzz;
mod hostile;
mod import;
mod key_kinds;
mod keys;
mod lifecycle;
mod metrics;
mod objects;
mod persistence;
mod postgres;
mod replicas;
mod root_rotation;
mod server;
mod storage;
mod support;
mod tls;
mod transport;
