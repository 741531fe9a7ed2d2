use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::clock::UnixMillis;
use crate::keys::{AliasName, KeyId, KmsKey, State};
use crate::storage::{AliasRow, StorageError, StoredKey, VersionRow, key_kind, origin};

pub(super) fn meta(c: &mut Connection, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
    Ok(
        c.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()?,
    )
}

pub(super) fn set_meta(c: &mut Connection, name: &str, value: &[u8]) -> Result<(), StorageError> {
    c.execute(
        "INSERT INTO meta (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        params![name, value],
    )?;
    Ok(())
}

fn parse_key_id(s: &str) -> Result<KeyId, StorageError> {
    KeyId::parse(s).map_err(|_| StorageError::Corrupt(format!("key id {s:?}")))
}

pub(super) fn load_all(c: &mut Connection) -> Result<Vec<StoredKey>, StorageError> {
    let tx = c.transaction()?;
    let mut keys: BTreeMap<KeyId, StoredKey> = BTreeMap::new();
    {
        let mut stmt = tx.prepare(
            "SELECT key_id, description, state, created_at_ms, primary_version, rotation_period_days,
                    next_rotation_at_ms, deletion_at_ms, key_spec, key_usage, origin, valid_to_ms,
                    import_fingerprint
             FROM keys",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let id = parse_key_id(&r.get::<_, String>(0)?)?;
            let state: String = r.get(2)?;
            let record = KmsKey {
                id,
                description: r.get(1)?,
                state: State::parse(&state)
                    .ok_or_else(|| StorageError::Corrupt(format!("key state {state:?}")))?,
                created_at: UnixMillis(r.get(3)?),
                primary_version: r.get(4)?,
                rotation_period_days: r.get(5)?,
                next_rotation_at: r.get::<_, Option<i64>>(6)?.map(UnixMillis),
                deletion_at: r.get::<_, Option<i64>>(7)?.map(UnixMillis),
                tags: BTreeMap::new(),
                kind: key_kind(&r.get::<_, String>(8)?, &r.get::<_, String>(9)?)?,
                origin: origin(&r.get::<_, String>(10)?)?,
                valid_to: r.get::<_, Option<i64>>(11)?.map(UnixMillis),
                import_fingerprint: r.get(12)?,
            };
            keys.insert(
                id,
                StoredKey {
                    record,
                    versions: Vec::new(),
                    aliases: Vec::new(),
                    policy: None,
                },
            );
        }
    }
    fn key(
        keys: &mut BTreeMap<KeyId, StoredKey>,
        s: String,
    ) -> Result<&mut StoredKey, StorageError> {
        let id = parse_key_id(&s)?;
        keys.get_mut(&id)
            .ok_or_else(|| StorageError::Corrupt(format!("row refers to missing key {id}")))
    }
    {
        let mut stmt = tx.prepare("SELECT key_id, name, value FROM key_tags")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            key(&mut keys, r.get(0)?)?
                .record
                .tags
                .insert(r.get(1)?, r.get(2)?);
        }
    }
    {
        let mut stmt = tx.prepare(
            "SELECT key_id, version, created_at_ms, wrapped_material FROM key_versions ORDER BY key_id, version",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            key(&mut keys, r.get(0)?)?.versions.push(VersionRow {
                version: r.get(1)?,
                created_at: UnixMillis(r.get(2)?),
                wrapped_material: r.get(3)?,
            });
        }
    }
    {
        let mut stmt = tx.prepare("SELECT alias_name, key_id, created_at_ms FROM aliases")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let name: String = r.get(0)?;
            let key_id: String = r.get(1)?;
            let alias = AliasRow {
                name: AliasName::parse(&name)
                    .map_err(|_| StorageError::Corrupt(format!("alias {name:?}")))?,
                key_id: parse_key_id(&key_id)?,
                created_at: UnixMillis(r.get(2)?),
            };
            key(&mut keys, key_id)?.aliases.push(alias);
        }
    }
    {
        let mut stmt = tx.prepare("SELECT key_id, policy FROM key_policies")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            key(&mut keys, r.get(0)?)?.policy = Some(r.get(1)?);
        }
    }
    Ok(keys.into_values().collect())
}

pub(super) fn insert_key(
    c: &mut Connection,
    record: &KmsKey,
    version: &VersionRow,
    alias: Option<&AliasRow>,
    policy: Option<&str>,
) -> Result<(), StorageError> {
    let tx = c.transaction()?;
    tx.execute(
        "INSERT INTO keys (key_id, description, state, created_at_ms, primary_version, rotation_period_days,
                           next_rotation_at_ms, deletion_at_ms, key_spec, key_usage, origin, valid_to_ms,
                           import_fingerprint)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            record.id.to_string(),
            record.description,
            record.state.as_str(),
            record.created_at.0,
            record.primary_version,
            record.rotation_period_days,
            record.next_rotation_at.map(|t| t.0),
            record.deletion_at.map(|t| t.0),
            record.kind.spec.as_str(),
            record.kind.usage.as_str(),
            record.origin.as_str(),
            record.valid_to.map(|t| t.0),
            record.import_fingerprint,
        ],
    )?;
    for (name, value) in &record.tags {
        tx.execute(
            "INSERT INTO key_tags (key_id, name, value) VALUES (?1, ?2, ?3)",
            params![record.id.to_string(), name, value],
        )?;
    }
    insert_version(&tx, record.id, version)?;
    if let Some(alias) = alias {
        insert_alias_tx(&tx, alias)?;
    }
    if let Some(policy) = policy {
        set_policy_tx(&tx, record.id, policy, record.created_at)?;
    }
    tx.commit()?;
    Ok(())
}

/// Writes every mutable field of a key's record: its state, versions, rotation, deletion, description and tags.
pub(super) fn update_key(tx: &Transaction<'_>, record: &KmsKey) -> Result<(), StorageError> {
    let id = record.id.to_string();
    let changed = tx.execute(
        "UPDATE keys SET state = ?2, primary_version = ?3, next_rotation_at_ms = ?4, deletion_at_ms = ?5,
                         description = ?6, rotation_period_days = ?7, valid_to_ms = ?8, import_fingerprint = ?9
         WHERE key_id = ?1",
        params![
            id,
            record.state.as_str(),
            record.primary_version,
            record.next_rotation_at.map(|t| t.0),
            record.deletion_at.map(|t| t.0),
            record.description,
            record.rotation_period_days,
            record.valid_to.map(|t| t.0),
            record.import_fingerprint,
        ],
    )?;
    if changed != 1 {
        return Err(StorageError::Corrupt(format!(
            "key {} is not stored",
            record.id
        )));
    }
    tx.execute("DELETE FROM key_tags WHERE key_id = ?1", [&id])?;
    for (name, value) in &record.tags {
        tx.execute(
            "INSERT INTO key_tags (key_id, name, value) VALUES (?1, ?2, ?3)",
            params![id, name, value],
        )?;
    }
    Ok(())
}

/// Points an alias at another key; false if the alias does not name `from`.
pub(super) fn move_alias(
    c: &mut Connection,
    name: &str,
    from: KeyId,
    to: KeyId,
) -> Result<bool, StorageError> {
    Ok(c.execute(
        "UPDATE aliases SET key_id = ?3 WHERE alias_name = ?1 AND key_id = ?2",
        params![name, from.to_string(), to.to_string()],
    )? == 1)
}

fn insert_version(
    tx: &Transaction<'_>,
    key_id: KeyId,
    version: &VersionRow,
) -> Result<(), StorageError> {
    tx.execute(
        "INSERT INTO key_versions (key_id, version, created_at_ms, wrapped_material) VALUES (?1, ?2, ?3, ?4)",
        params![
            key_id.to_string(),
            version.version,
            version.created_at.0,
            version.wrapped_material
        ],
    )?;
    Ok(())
}

pub(super) fn add_version(
    c: &mut Connection,
    record: &KmsKey,
    version: &VersionRow,
) -> Result<(), StorageError> {
    let tx = c.transaction()?;
    insert_version(&tx, record.id, version)?;
    update_key(&tx, record)?;
    tx.commit()?;
    Ok(())
}

/// Sets (imports) or erases (deletes) one version's wrapped material, with the key's new record.
pub(super) fn set_material(
    c: &mut Connection,
    record: &KmsKey,
    version: u32,
    wrapped: Option<&[u8]>,
) -> Result<(), StorageError> {
    let tx = c.transaction()?;
    update_key(&tx, record)?;
    let changed = tx.execute(
        "UPDATE key_versions SET wrapped_material = ?3 WHERE key_id = ?1 AND version = ?2",
        params![record.id.to_string(), version, wrapped],
    )?;
    if changed != 1 {
        return Err(StorageError::Corrupt(format!(
            "key {} has no version {version}",
            record.id
        )));
    }
    tx.commit()?;
    Ok(())
}

pub(super) fn destroy_key(c: &mut Connection, record: &KmsKey) -> Result<(), StorageError> {
    let tx = c.transaction()?;
    update_key(&tx, record)?;
    let id = record.id.to_string();
    tx.execute(
        "UPDATE key_versions SET wrapped_material = NULL WHERE key_id = ?1",
        [&id],
    )?;
    tx.execute("DELETE FROM aliases WHERE key_id = ?1", [&id])?;
    tx.commit()?;
    Ok(())
}

fn insert_alias_tx(tx: &Transaction<'_>, alias: &AliasRow) -> Result<(), StorageError> {
    tx.execute(
        "INSERT INTO aliases (alias_name, key_id, created_at_ms) VALUES (?1, ?2, ?3)",
        params![
            alias.name.as_str(),
            alias.key_id.to_string(),
            alias.created_at.0
        ],
    )?;
    Ok(())
}

pub(super) fn insert_alias(c: &mut Connection, alias: &AliasRow) -> Result<(), StorageError> {
    let tx = c.transaction()?;
    insert_alias_tx(&tx, alias)?;
    tx.commit()?;
    Ok(())
}

pub(super) fn delete_alias(c: &mut Connection, name: &str) -> Result<bool, StorageError> {
    Ok(c.execute("DELETE FROM aliases WHERE alias_name = ?1", [name])? == 1)
}

pub(super) fn versions_of(
    c: &mut Connection,
    key_id: KeyId,
) -> Result<Vec<VersionRow>, StorageError> {
    let mut stmt = c.prepare(
        "SELECT version, created_at_ms, wrapped_material FROM key_versions WHERE key_id = ?1 ORDER BY version",
    )?;
    let rows = stmt.query_map([key_id.to_string()], |r| {
        Ok(VersionRow {
            version: r.get(0)?,
            created_at: UnixMillis(r.get(1)?),
            wrapped_material: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn set_policy_tx(
    tx: &Transaction<'_>,
    key_id: KeyId,
    policy: &str,
    at: UnixMillis,
) -> Result<(), StorageError> {
    tx.execute(
        "INSERT INTO key_policies (key_id, policy, updated_at_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (key_id) DO UPDATE SET policy = excluded.policy, updated_at_ms = excluded.updated_at_ms",
        params![key_id.to_string(), policy, at.0],
    )?;
    Ok(())
}

pub(super) fn set_policy(
    c: &mut Connection,
    key_id: KeyId,
    policy: &str,
    at: UnixMillis,
) -> Result<(), StorageError> {
    let tx = c.transaction()?;
    set_policy_tx(&tx, key_id, policy, at)?;
    tx.commit()?;
    Ok(())
}
