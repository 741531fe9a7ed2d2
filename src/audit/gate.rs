//! The one mechanism by which a change waits for its record: whatever changes what kmsd stores (a call's
//! management work in `kms` and `auth`, the maintenance loop, the bootstrap) describes the change to a [`Gate`]
//! under its write lock, after validating it and before storing it, and goes on only if the gate made the change's
//! record durable.
//!
//! Invariant: no change is stored without its record; a gate that cannot write the record refuses the change.

use std::future::Future;
use std::pin::Pin;

use crate::keys::KeyId;
use crate::rpc::Event;

/// A change about to be stored, as its record names it.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    pub event: Event,
    /// The key it changes, and the version it made (CreateKey, RotateKey).
    pub key_id: Option<KeyId>,
    pub key_version: Option<u32>,
    /// Facts only the change knows (the new token's id, the records a prune removes); never a secret.
    pub parameters: &'a [(&'a str, &'a str)],
}

impl Change<'static> {
    /// A change of key `key_id`.
    pub fn key(event: impl Into<Event>, key_id: KeyId, key_version: Option<u32>) -> Self {
        Change {
            event: event.into(),
            key_id: Some(key_id),
            key_version,
            parameters: &[],
        }
    }
}

impl<'a> Change<'a> {
    /// The same change, described by `parameters` as well.
    pub fn with<'b>(self, parameters: &'b [(&'b str, &'b str)]) -> Change<'b>
    where
        'a: 'b,
    {
        Change { parameters, ..self }
    }

    /// A change of no key (principals, tokens, the log itself), described by `parameters`.
    pub fn of(event: impl Into<Event>, parameters: &'a [(&'a str, &'a str)]) -> Self {
        Change {
            event: event.into(),
            key_id: None,
            key_version: None,
            parameters,
        }
    }
}

/// The change's record could not be made durable: the change must not be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the change's audit record could not be made durable")]
pub struct Unrecorded;

/// Makes a change's record durable before the change is stored (see the module documentation).
pub trait Gate: Send + Sync {
    fn approve<'a>(
        &'a self,
        change: Change<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<(), Unrecorded>> + Send + 'a>>;
}
