//! Moving a data directory's SQLite database to PostgreSQL (`kmsctl migrate-to-postgres`), with the daemon
//! stopped: the source is verified, copied in one transaction, and the copy verified against it before anything
//! is reported moved.
//!
//! Invariant: a move that reports success left a database whose audit chain verifies with the same public key to
//! the same head, whose keys, aliases, policies, principals and tokens equal the source's, and whose every key
//! version unwraps with the root key. The SQLite file is left as it was.

use std::path::Path;
use std::sync::Arc;

use super::{DataDirLock, read_root_key};
use crate::audit::public_key_of;
use crate::audit::verify::{VerifyReport, verify};
use crate::clock::SystemClock;
use crate::kms::Kms;
use crate::storage::{AuditReader, DatabaseUrl, Imported, Storage, StoredKey};

/// What a move copied and what the check of the copy found.
#[derive(Debug, Clone)]
pub struct Moved {
    pub imported: Imported,
    /// Records the copy's chain verified, and its head.
    pub records_verified: u64,
    pub head_seq: u64,
    pub head_hash: String,
}

/// Moves `<data_dir>/kmsd.db` into the empty database `url` names (see the module documentation).
pub async fn move_to_postgres(
    data_dir: &Path,
    root_key_file: Option<&Path>,
    url: &DatabaseUrl,
) -> Result<Moved, String> {
    let _lock = DataDirLock::acquire(data_dir).map_err(|e| e.to_string())?;
    let db = data_dir.join("kmsd.db");
    if !db.is_file() {
        return Err(format!(
            "{} does not exist: there is nothing to move",
            db.display()
        ));
    }
    let root_path = root_key_file
        .map(Path::to_path_buf)
        .unwrap_or_else(|| data_dir.join("root.key"));
    let root = read_root_key(&root_path).map_err(|e| e.to_string())?;
    let reader = AuditReader::open(&db).map_err(|e| e.to_string())?;
    let public_key = public_key_of(&reader, &root)?;
    // A damaged log would move its damage: the source must verify first.
    let before = verified(reader, public_key, "the SQLite database").await?;

    let target = Storage::open_postgres(url)
        .await
        .map_err(|e| format!("cannot open {url}: {e}"))?;
    let Storage::Postgres(pg) = &target else {
        unreachable!("open_postgres opens PostgreSQL")
    };
    let imported = pg
        .import_sqlite(&db)
        .await
        .map_err(|e| format!("the move failed, nothing was written to {url}: {e}"))?;

    let after = verified(
        target.audit_reader().map_err(|e| e.to_string())?,
        public_key,
        "the copy",
    )
    .await?;
    if (after.records_checked, after.head_seq, &after.head_hash)
        != (before.records_checked, before.head_seq, &before.head_hash)
    {
        return Err(format!(
            "the copy's audit log ends at record {} ({} records) but the source's at {} ({} records)",
            after.head_seq, after.records_checked, before.head_seq, before.records_checked
        ));
    }
    let source = Storage::open_sqlite(&db).map_err(|e| e.to_string())?;
    let same = compare(&source, &target).await;
    source.close().await;
    same?;
    // Every key version unwraps in the copy, and the root key's check value matches it.
    let kms = Kms::open(target.clone(), Arc::new(root), Arc::new(SystemClock))
        .await
        .map_err(|e| format!("the copy's keys do not open: {e}"))?;
    kms.close().await;
    Ok(Moved {
        imported,
        records_verified: after.records_checked,
        head_seq: after.head_seq,
        head_hash: after.head_hash,
    })
}

async fn verified(
    reader: AuditReader,
    key: ed25519_dalek::VerifyingKey,
    what: &str,
) -> Result<VerifyReport, String> {
    let report = tokio::task::spawn_blocking(move || verify(&reader, &key, None))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot read {what}'s audit log: {e}"))?;
    match &report.problem {
        None => Ok(report),
        Some(problem) => Err(format!(
            "{what}'s audit log does not verify at record {}: {}",
            problem.seq, problem.message
        )),
    }
}

/// Keys (with versions, aliases and policies), principals and tokens are the same on both sides.
async fn compare(source: &Storage, target: &Storage) -> Result<(), String> {
    let keys = async |s: &Storage| -> Result<Vec<StoredKey>, String> {
        let mut keys = s.load_keys().await.map_err(|e| e.to_string())?;
        keys.sort_by_key(|k| k.record.id);
        for k in &mut keys {
            k.aliases.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(keys)
    };
    let (from, to) = (keys(source).await?, keys(target).await?);
    let same_keys = from.len() == to.len()
        && from.iter().zip(&to).all(|(a, b)| {
            a.record == b.record
                && a.versions == b.versions
                && a.aliases == b.aliases
                && a.policy == b.policy
        });
    if !same_keys {
        return Err("the copy's keys differ from the source's".into());
    }
    let from = source.load_access().await.map_err(|e| e.to_string())?;
    let to = target.load_access().await.map_err(|e| e.to_string())?;
    if from != to {
        return Err("the copy's principals, tokens or access keys differ from the source's".into());
    }
    Ok(())
}
