//! The AWS-compatible front end (issue 15), being built: so far, the verification of AWS Signature Version 4
//! ([`sigv4`]), tested against requests signed by botocore's own signer, and the ARNs of keys and aliases
//! ([`arn`]).
//!
//! Invariant: nothing here does I/O or knows a transport; the endpoint that will serve AWS's JSON protocol is a
//! thin front end on the one call path (`service::call`), as the gRPC one is.

pub mod arn;
pub mod sigv4;
