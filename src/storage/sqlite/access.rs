//! Principals, their certificate identities, their bearer tokens (hashes only) and their access keys (secrets
//! wrapped under the root key), in SQLite.

use rusqlite::{Connection, params};

use super::SqliteStore;
use crate::clock::UnixMillis;
use crate::storage::{AccessKeyRow, AccessRows, PrincipalRow, StorageError, TokenRow};

impl SqliteStore {
    pub async fn load_access(&self) -> Result<AccessRows, StorageError> {
        self.call(load).await
    }

    pub async fn insert_principal(&self, p: PrincipalRow) -> Result<(), StorageError> {
        self.call(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO principals (name, description, admin, create_keys, created_at_ms, disabled_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    p.name,
                    p.description,
                    p.admin,
                    p.create_keys,
                    p.created_at.0,
                    p.disabled_at.map(|t| t.0)
                ],
            )?;
            for subject in &p.certificate_subjects {
                tx.execute(
                    "INSERT INTO principal_certificates (subject, principal) VALUES (?1, ?2)",
                    params![subject, p.name],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Disables a principal: its tokens and certificate stop authenticating. The row stays for the audit trail.
    pub async fn disable_principal(
        &self,
        name: String,
        at: UnixMillis,
    ) -> Result<(), StorageError> {
        self.call(move |c| {
            stamp(
                c,
                "UPDATE principals SET disabled_at_ms = ?2 WHERE name = ?1",
                &name,
                at,
                |name| format!("principal {name:?}"),
            )
        })
        .await
    }

    pub async fn insert_token(&self, t: TokenRow) -> Result<(), StorageError> {
        self.call(move |c| {
            c.execute(
                "INSERT INTO tokens (token_id, principal, description, secret_hash, created_at_ms, expires_at_ms,
                                     revoked_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    t.id,
                    t.principal,
                    t.description,
                    t.secret_hash.as_slice(),
                    t.created_at.0,
                    t.expires_at.map(|x| x.0),
                    t.revoked_at.map(|x| x.0)
                ],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn revoke_token(&self, id: String, at: UnixMillis) -> Result<(), StorageError> {
        self.call(move |c| {
            stamp(
                c,
                "UPDATE tokens SET revoked_at_ms = ?2 WHERE token_id = ?1",
                &id,
                at,
                |id| format!("token {id}"),
            )
        })
        .await
    }

    pub async fn insert_access_key(&self, k: AccessKeyRow) -> Result<(), StorageError> {
        self.call(move |c| {
            c.execute(
                "INSERT INTO access_keys (access_key_id, principal, description, wrapped_secret, created_at_ms,
                                          revoked_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    k.id,
                    k.principal,
                    k.description,
                    k.wrapped_secret,
                    k.created_at.0,
                    k.revoked_at.map(|x| x.0)
                ],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn revoke_access_key(&self, id: String, at: UnixMillis) -> Result<(), StorageError> {
        self.call(move |c| {
            stamp(
                c,
                "UPDATE access_keys SET revoked_at_ms = ?2 WHERE access_key_id = ?1",
                &id,
                at,
                |id| format!("access key {id}"),
            )
        })
        .await
    }
}

/// Sets one row's time column (`sql` takes the row's key as ?1 and the time as ?2): a disabled principal, a revoked
/// token or access key. A row that is not there is corruption: the caller found it in memory first.
fn stamp(
    c: &mut Connection,
    sql: &str,
    key: &str,
    at: UnixMillis,
    what: impl Fn(&str) -> String,
) -> Result<(), StorageError> {
    if c.execute(sql, params![key, at.0])? != 1 {
        return Err(StorageError::Corrupt(format!(
            "{} is not stored",
            what(key)
        )));
    }
    Ok(())
}

fn load(c: &mut Connection) -> Result<AccessRows, StorageError> {
    let tx = c.transaction()?;
    let mut principals: Vec<PrincipalRow> = tx
        .prepare(
            "SELECT name, description, admin, create_keys, created_at_ms, disabled_at_ms
             FROM principals ORDER BY name",
        )?
        .query_map([], |r| {
            Ok(PrincipalRow {
                name: r.get(0)?,
                description: r.get(1)?,
                admin: r.get(2)?,
                create_keys: r.get(3)?,
                created_at: UnixMillis(r.get(4)?),
                disabled_at: r.get::<_, Option<i64>>(5)?.map(UnixMillis),
                certificate_subjects: Vec::new(),
            })
        })?
        .collect::<Result<_, _>>()?;
    {
        let mut stmt =
            tx.prepare("SELECT subject, principal FROM principal_certificates ORDER BY subject")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let (subject, name): (String, String) = (r.get(0)?, r.get(1)?);
            let p = principals
                .iter_mut()
                .find(|p| p.name == name)
                .ok_or_else(|| {
                    StorageError::Corrupt(format!(
                        "certificate subject of missing principal {name:?}"
                    ))
                })?;
            p.certificate_subjects.push(subject);
        }
    }
    let tokens = tx
        .prepare(
            "SELECT token_id, principal, description, secret_hash, created_at_ms, expires_at_ms, revoked_at_ms
             FROM tokens ORDER BY created_at_ms, token_id",
        )?
        .query_map([], |r| {
            Ok(TokenRow {
                id: r.get(0)?,
                principal: r.get(1)?,
                description: r.get(2)?,
                secret_hash: r.get(3)?,
                created_at: UnixMillis(r.get(4)?),
                expires_at: r.get::<_, Option<i64>>(5)?.map(UnixMillis),
                revoked_at: r.get::<_, Option<i64>>(6)?.map(UnixMillis),
            })
        })?
        .collect::<Result<_, _>>()?;
    let access_keys = tx
        .prepare(
            "SELECT access_key_id, principal, description, wrapped_secret, created_at_ms, revoked_at_ms
             FROM access_keys ORDER BY created_at_ms, access_key_id",
        )?
        .query_map([], |r| {
            Ok(AccessKeyRow {
                id: r.get(0)?,
                principal: r.get(1)?,
                description: r.get(2)?,
                wrapped_secret: r.get(3)?,
                created_at: UnixMillis(r.get(4)?),
                revoked_at: r.get::<_, Option<i64>>(5)?.map(UnixMillis),
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(AccessRows {
        principals,
        tokens,
        access_keys,
    })
}
