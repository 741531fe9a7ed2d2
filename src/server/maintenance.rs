//! What the daemon does on its own: the maintenance loop (every `maintenance_interval`, and once at start-up)
//! rotates keys whose rotation period elapsed and destroys keys whose deletion window ended, each through
//! [`MaintenanceGate`], which records the change as principal `kmsd` before it is stored.
//!
//! Invariant: the daemon changes no key without a durable record, as a call does not.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::{AuditLog, AuditRecord, Change, Gate, Unrecorded};
use crate::auth::SYSTEM_PRINCIPAL;
use crate::clock::Clock;
use crate::kms::Kms;
use crate::rpc::{DaemonEvent, Event};

/// Records the changes the daemon makes on its own (automatic rotation, the end of a deletion window) in the audit
/// log before they are stored, as a call's changes are: no key changes without a record.
pub(super) struct MaintenanceGate {
    pub(super) audit: Arc<AuditLog>,
    pub(super) clock: Arc<dyn Clock>,
}

impl Gate for MaintenanceGate {
    fn approve<'a>(
        &'a self,
        change: Change<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<(), Unrecorded>> + Send + 'a>> {
        Box::pin(async move {
            let reason = match change.event {
                Event::Daemon(DaemonEvent::AutomaticRotation) => {
                    "automatic: the key's rotation period elapsed"
                }
                Event::Daemon(DaemonEvent::KeyDestroyed) => {
                    "automatic: the key's deletion window ended; its material is destroyed"
                }
                _ => "automatic",
            };
            let mut record =
                system_record(self.clock.now(), change.event, reason, change.parameters);
            record.key_id = change.key_id.map(|id| id.to_string());
            record.key_version = change.key_version;
            self.audit
                .append(record)
                .await
                .map(drop)
                .map_err(|_| Unrecorded)
        })
    }
}

/// The record of a change the daemon makes on its own, as principal `kmsd`.
pub(super) fn system_record(
    now: crate::clock::UnixMillis,
    event: Event,
    reason: &str,
    parameters: &[(&str, &str)],
) -> AuditRecord {
    AuditRecord::internal(now, event, SYSTEM_PRINCIPAL, reason, parameters)
}

pub(super) async fn maintenance_loop(kms: Arc<Kms>, gate: Arc<MaintenanceGate>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await; // The first tick is immediate; start-up already ran a pass.
    loop {
        ticks.tick().await;
        if let Err(e) = kms.run_maintenance(&*gate).await {
            tracing::error!(error = %e, "maintenance failed; will retry");
        }
        // The change log only bridges replicas' catch-ups; one further behind than this reloads everything.
        if let Err(e) = kms.storage().trim_changes(CHANGE_LOG_RETENTION).await {
            tracing::warn!(error = %e, "trimming the change log failed; will retry");
        }
    }
}

/// How long change-log rows are kept (PostgreSQL): far longer than any replica stays current without catching up.
const CHANGE_LOG_RETENTION: Duration = Duration::from_secs(3600);
