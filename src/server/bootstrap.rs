//! The first administrator: made on first start, and again offline when its token is lost.
//!
//! First start is resumable. It makes the `admin` principal, then a token for it (only the token's hash is
//! stored), then `<data-dir>/admin.token` (written to a partial file, synced, renamed, directory synced), each
//! change audited as principal `kmsd` before it is stored, and only then stores the `bootstrap_complete` mark. A
//! start that finds no mark finishes the job: it makes the principal if it is missing, revokes every token an
//! interrupted start issued (their secrets never reached a complete file), and issues a new one. A crash at any
//! step therefore leaves nothing that stops the next start from completing it.
//!
//! `kmsd recover-admin` issues a new token for an administrator while the daemon is stopped: it takes the data
//! directory's lock, needs the root key (the database's check value must open under it), and records what it does
//! in the audit log as principal `kmsd`, like a first start.
//!
//! Invariant: a token's secret is written only to the token file (mode 0600), never to the database or a log.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::maintenance::system_record;
use super::{DataDirLock, StartError};
use crate::config::Config;
use std::future::Future;
use std::pin::Pin;

use crate::audit::{AuditLog, Change, CheckpointSigner, Gate, SIGNING_KEY_META, Unrecorded};
use crate::auth::{AccessError, Authenticator, BOOTSTRAP_ADMIN, NewPrincipal, TokenInfo};
use crate::clock::Clock;
use crate::kms::{Kms, OpenError};
use crate::storage::Storage;

/// The `meta` row stored once first start has completed.
pub const BOOTSTRAP_MARK: &str = "bootstrap_complete";

/// The variable that makes the process abort at a named step (`bootstrap:principal`, ...): how the tests kill
/// kmsd at every step of its first start. Nothing else reads it.
pub const CRASH_AT_VARIABLE: &str = "KMSD_CRASH_AT";

fn crash_point(step: &str) {
    if std::env::var(CRASH_AT_VARIABLE).is_ok_and(|v| v.strip_prefix("bootstrap:") == Some(step)) {
        std::process::abort();
    }
}

/// What the records of one bootstrap or recovery say, and who does it.
struct Steward<'a> {
    auth: &'a Authenticator,
    audit: &'a AuditLog,
    clock: &'a dyn Clock,
    reason: &'static str,
    /// Whether its records may use the disk below the hard floor (recovery is how an operator gets back in).
    reserve: bool,
}

/// Each change's record, as principal `kmsd`, durable before the change is stored.
impl Gate for Steward<'_> {
    fn approve<'a>(
        &'a self,
        change: Change<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<(), Unrecorded>> + Send + 'a>> {
        Box::pin(async move {
            let record = system_record(
                self.clock.now(),
                change.event,
                self.reason,
                change.parameters,
            );
            let appended = if self.reserve {
                self.audit.append_in_reserve(record).await
            } else {
                self.audit.append(record).await
            };
            appended.map(drop).map_err(|_| Unrecorded)
        })
    }
}

impl Steward<'_> {
    /// Makes `name` an administrator principal unless it already is one.
    async fn ensure_admin(&self, name: &str, description: &str) -> Result<(), StartError> {
        if let Some(existing) = self.auth.principals().into_iter().find(|p| p.name == name) {
            if !existing.admin || existing.disabled_at.is_some() {
                return Err(StartError::Bootstrap(format!(
                    "principal {name:?} exists but is not an enabled administrator; name another principal (it \
                     will be created as an administrator)"
                )));
            }
            return Ok(());
        }
        self.auth
            .create_principal(
                NewPrincipal {
                    name: name.to_owned(),
                    description: description.to_owned(),
                    admin: true,
                    create_keys: true,
                    certificate_subjects: Vec::new(),
                },
                self,
            )
            .await
            .map(drop)
            .map_err(failed)
    }

    /// Revokes every live token of `principal`.
    async fn revoke_all(&self, principal: &str) -> Result<(), StartError> {
        for token in self.auth.tokens(Some(principal)) {
            if token.revoked_at.is_some() {
                continue;
            }
            self.auth
                .revoke_token(&token.id, self)
                .await
                .map_err(failed)?;
        }
        Ok(())
    }

    /// Issues a token for `principal` and writes it to `path` (0600): the file is opened before the token is
    /// issued, so no token is stored that could not be handed over, and it appears under `path` only complete.
    async fn issue_to_file(
        &self,
        principal: &str,
        description: &str,
        path: &Path,
    ) -> Result<TokenInfo, StartError> {
        use std::io::Write;
        let partial = path.with_extension("token.partial");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&partial).map_err(|e| {
            StartError::Bootstrap(format!("cannot create {}: {e}", partial.display()))
        })?;
        let issued = self
            .auth
            .create_token(principal, description.to_owned(), None, self)
            .await
            .map_err(failed)?;
        crash_point("token");
        let cannot = |e: std::io::Error| {
            StartError::Bootstrap(format!("cannot write the token to {}: {e}", path.display()))
        };
        file.write_all(format!("{}\n", issued.token.as_str()).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(cannot)?;
        crash_point("file");
        std::fs::rename(&partial, path).map_err(cannot)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(cannot)?;
        }
        Ok(issued.info)
    }
}

fn failed(e: AccessError) -> StartError {
    StartError::Bootstrap(e.to_string())
}

/// Completes first start unless it has completed before (see the module documentation).
pub(super) async fn first_start(
    config: &Config,
    storage: &Storage,
    auth: &Authenticator,
    audit: &AuditLog,
    clock: &dyn Clock,
) -> Result<(), StartError> {
    if storage.meta(BOOTSTRAP_MARK).await?.is_some() {
        return Ok(());
    }
    // Replicas starting together: one bootstraps while the others wait, then find the mark (and the principals
    // it made) and leave its token alone.
    let _bootstrap = storage.lock_bootstrap().await?;
    if storage.meta(BOOTSTRAP_MARK).await?.is_some() {
        auth.catch_up(true).await?;
        return Ok(());
    }
    auth.catch_up(true).await?;
    let resumed = !auth.is_empty();
    let steward = Steward {
        auth,
        audit,
        clock,
        reason: if resumed {
            "bootstrap resumed: the first start was interrupted; its tokens are revoked and a new one issued"
        } else {
            "bootstrap: the first administrator, created on first start"
        },
        reserve: false,
    };
    steward
        .ensure_admin(BOOTSTRAP_ADMIN, "created on first start")
        .await?;
    crash_point("principal");
    steward.revoke_all(BOOTSTRAP_ADMIN).await?;
    let path = config.admin_token_path();
    let token = steward
        .issue_to_file(
            BOOTSTRAP_ADMIN,
            "admin.token, written on first start",
            &path,
        )
        .await?;
    crash_point("renamed");
    storage.set_meta(BOOTSTRAP_MARK, vec![1]).await?;
    tracing::warn!(
        path = %path.display(),
        principal = BOOTSTRAP_ADMIN,
        token_id = %token.id,
        resumed,
        "created the administrator; its bearer token is in this file (mode 0600). Use it to create principals \
         and tokens for services, then move it somewhere safe"
    );
    Ok(())
}

/// What `kmsd recover-admin` did.
#[derive(Debug)]
pub struct Recovered {
    pub path: PathBuf,
    pub principal: String,
    pub token_id: String,
}

/// Issues a new token for the administrator `principal` (created if it does not exist) into `out`, default
/// `<data-dir>/admin.token`, with the daemon stopped. Refuses to overwrite an existing file.
pub async fn recover_admin(
    config: &Config,
    principal: &str,
    out: Option<PathBuf>,
    clock: Arc<dyn Clock>,
) -> Result<Recovered, StartError> {
    let _lock = DataDirLock::acquire(&config.data.dir)?;
    if config.data.database_url.is_none() && !config.database_path().exists() {
        return Err(StartError::Bootstrap(format!(
            "{} does not exist: there is nothing to recover (start kmsd to create it)",
            config.database_path().display()
        )));
    }
    let path = out.unwrap_or_else(|| config.admin_token_path());
    if path.exists() {
        return Err(StartError::Bootstrap(format!(
            "{} exists; move it away or name another file with --out",
            path.display()
        )));
    }
    let root = super::read_root_key(&config.root_key_path())?;
    let storage = match &config.data.database_url {
        None => Storage::open_sqlite(&config.database_path())?,
        Some(url) => Storage::open_postgres(url).await?,
    };
    let wrapped = storage.meta(SIGNING_KEY_META).await?.ok_or_else(|| {
        StartError::Bootstrap("the database has no audit signing key: not a kmsd database".into())
    })?;
    let signer = CheckpointSigner::unwrap(&root, &wrapped).map_err(|_| OpenError::WrongRootKey)?;
    let root = std::sync::Arc::new(root);
    let auth = Authenticator::load(storage.clone(), root.clone(), clock.clone()).await?;
    // Opening the key store checks the root key against the database before anything is written.
    let kms = Kms::open(storage.clone(), root, clock.clone()).await?;
    let audit = AuditLog::open(
        &storage,
        signer,
        clock.clone(),
        config.audit.checkpoint_interval,
        config.audit.disk,
        Arc::new(crate::metrics::Metrics::default()),
    )
    .await?;
    let steward = Steward {
        auth: &auth,
        audit: &audit,
        clock: &*clock,
        reason: "recovery: kmsd recover-admin, run with the daemon stopped and the root key",
        reserve: true,
    };
    let result = async {
        steward
            .ensure_admin(principal, "created by kmsd recover-admin")
            .await?;
        let token = steward
            .issue_to_file(principal, "issued by kmsd recover-admin", &path)
            .await?;
        if storage.meta(BOOTSTRAP_MARK).await?.is_none() {
            storage.set_meta(BOOTSTRAP_MARK, vec![1]).await?;
        }
        Ok::<_, StartError>(token)
    }
    .await;
    audit.close().await;
    kms.close().await;
    let token = result?;
    Ok(Recovered {
        path,
        principal: principal.to_owned(),
        token_id: token.id,
    })
}
