//! The AWS-compatible front end: AWS KMS's JSON protocol on a second listener, so AWS SDKs, the AWS CLI and the
//! AWS Encryption SDK use kmsd unchanged. `endpoint.rs` serves HTTP/1.1 and hands each request to the gRPC
//! service's own handler through the one call path; `ops.rs` reads AWS's JSON requests into gRPC requests and writes
//! the responses back; `sigv4.rs` verifies AWS Signature Version 4 (tested against requests botocore's signer
//! made); `arn.rs` makes and reads key and alias ARNs for this kmsd's region and account.
//!
//! Invariants: a thin front end: no handler, authorization rule or record is written twice; everything but
//! `endpoint.rs` is free of I/O; refusals carry AWS's exception names; an ARN of another region, account or
//! partition names nothing here.

pub mod arn;
pub mod endpoint;
pub mod ops;
pub mod sigv4;
