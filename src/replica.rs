//! Replicas: keeping this process's caches current with changes other kmsd processes make to a shared database.
//!
//! On PostgreSQL every management change takes the next number of a change log and notifies `kmsd_changes` when it
//! commits (`storage::postgres`). [`follow`] LISTENs on a connection of its own and, on each notification and at
//! least every [`POLL_EVERY`], applies the key and access changes after the ones it has applied ([`Kms::catch_up`],
//! [`Authenticator::catch_up`]); when its connection is lost it reconnects and reloads everything. A management
//! change made here first takes the cluster's change lock and catches up under it, so it is validated against the
//! latest state wherever that was written.
//!
//! Invariant (the revocation bound): a replica answers a call only if a catch-up that began at most
//! [`STALE_AFTER`] earlier has finished ([`Currency`]), so a change committed anywhere is in force on every replica
//! that answers no later than [`STALE_AFTER`] after its commit; a replica that cannot catch up refuses calls
//! (UNAVAILABLE, health NOT_SERVING) until it has. With notifications working the delay is a round trip.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::auth::Authenticator;
use crate::kms::Kms;
use crate::storage::Storage;

/// How often a replica catches up when no notification arrives (notifications can be lost with a connection).
pub const POLL_EVERY: Duration = Duration::from_millis(250);
/// How old the last finished catch-up may be (from its start) while the replica still answers calls.
pub const STALE_AFTER: Duration = Duration::from_millis(1500);
/// How long to wait before reconnecting a lost listener.
const RECONNECT_AFTER: Duration = Duration::from_millis(200);

/// Whether this process's caches are current enough to answer calls. A standalone daemon (SQLite) always is.
pub struct Currency {
    followed: bool,
    base: Instant,
    /// Nanoseconds after `base` until which the caches count as current.
    until: AtomicU64,
    changes: watch::Sender<bool>,
}

impl Currency {
    /// For a daemon that is the only writer of its database.
    pub fn standalone() -> Arc<Self> {
        Arc::new(Currency {
            followed: false,
            base: Instant::now(),
            until: AtomicU64::new(u64::MAX),
            changes: watch::Sender::new(true),
        })
    }

    /// For a replica whose caches were loaded just now.
    pub fn followed() -> Arc<Self> {
        let currency = Currency {
            followed: true,
            base: Instant::now(),
            until: AtomicU64::new(0),
            changes: watch::Sender::new(true),
        };
        currency.caught_up(currency.base);
        Arc::new(currency)
    }

    /// Whether calls may be answered now.
    pub fn is_current(&self) -> bool {
        !self.followed
            || (self.base.elapsed().as_nanos() as u64) < self.until.load(Ordering::Acquire)
    }

    /// Follows [`Currency::is_current`] as the follower sees it change (for health).
    pub fn changes(&self) -> watch::Receiver<bool> {
        self.changes.subscribe()
    }

    /// Notes a catch-up that began at `started` and has finished.
    fn caught_up(&self, started: Instant) {
        let until = (started + STALE_AFTER)
            .saturating_duration_since(self.base)
            .as_nanos() as u64;
        self.until.fetch_max(until, Ordering::AcqRel);
        self.publish();
    }

    fn publish(&self) {
        let now = self.is_current();
        self.changes
            .send_if_modified(|c| std::mem::replace(c, now) != now);
    }
}

/// Follows the change log for as long as the task runs (nothing to follow on SQLite).
pub async fn follow(
    storage: Storage,
    kms: Arc<Kms>,
    auth: Arc<Authenticator>,
    currency: Arc<Currency>,
) {
    if !storage.is_shared() {
        return;
    }
    let mut first = true;
    loop {
        let mut listener = match storage.listen().await {
            Ok(Some(listener)) => listener,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for other replicas' changes; retrying");
                currency.publish();
                tokio::time::sleep(RECONNECT_AFTER).await;
                continue;
            }
        };
        // Changes made while no one listened are found by reloading everything (the log may have been trimmed).
        if !first {
            tracing::info!(
                "listening for other replicas' changes again; reloading keys and principals"
            );
        }
        let mut everything = !first;
        first = false;
        let mut polls = tokio::time::interval(POLL_EVERY);
        polls.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let started = Instant::now();
            match catch_up(&kms, &auth, everything).await {
                Ok(()) => {
                    everything = false;
                    currency.caught_up(started);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot apply other replicas' changes; retrying");
                    currency.publish();
                }
            }
            tokio::select! {
                woken = listener.notifications.recv() => if woken.is_none() {
                    tracing::warn!("lost the connection that listens for other replicas' changes; reconnecting");
                    break;
                },
                _ = polls.tick() => {}
            }
        }
        currency.publish();
    }
}

async fn catch_up(kms: &Kms, auth: &Authenticator, everything: bool) -> Result<(), String> {
    if everything {
        kms.reload().await.map_err(|e| e.to_string())?;
    } else {
        kms.catch_up().await.map_err(|e| e.to_string())?;
    }
    auth.catch_up(everything).await.map_err(|e| e.to_string())
}
