//! Keys, aliases, policies, principals and tokens in PostgreSQL: the same operations as `sqlite/keys.rs` and
//! `sqlite/access.rs`, each one transaction.

use std::collections::BTreeMap;

use deadpool_postgres::GenericClient;

use super::{CHANGES_CHANNEL, PgStore};
use crate::clock::UnixMillis;
use crate::keys::{AliasName, KeyId, KmsKey, State};
use crate::storage::{
    AccessKeyRow, AccessRows, AliasRow, ChangeKind, Changes, PrincipalRow, StorageError, StoredKey,
    TokenRow, VersionRow, key_kind, origin,
};

fn parse_key_id(s: &str) -> Result<KeyId, StorageError> {
    KeyId::parse(s).map_err(|_| StorageError::Corrupt(format!("key id {s:?}")))
}

fn millis(t: Option<UnixMillis>) -> Option<i64> {
    t.map(|t| t.0)
}

fn version_number(v: i32) -> Result<u32, StorageError> {
    u32::try_from(v).map_err(|_| StorageError::Corrupt(format!("key version {v}")))
}

impl PgStore {
    pub async fn meta(&self, name: &'static str) -> Result<Option<Vec<u8>>, StorageError> {
        let c = self.client().await?;
        let row = c
            .query_opt("SELECT value FROM meta WHERE name = $1", &[&name])
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    pub async fn set_meta(&self, name: &'static str, value: Vec<u8>) -> Result<(), StorageError> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO meta (name, value) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            &[&name, &value],
        )
        .await?;
        Ok(())
    }

    pub async fn insert_meta_if_absent(
        &self,
        name: &'static str,
        value: Vec<u8>,
    ) -> Result<Vec<u8>, StorageError> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&name, &value],
        )
        .await?;
        Ok(
            c.query_one("SELECT value FROM meta WHERE name = $1", &[&name])
                .await?
                .get(0),
        )
    }

    pub async fn load_keys(&self) -> Result<Vec<StoredKey>, StorageError> {
        self.load(None).await
    }

    /// One key as stored now, if it exists.
    pub async fn load_key(&self, id: KeyId) -> Result<Option<StoredKey>, StorageError> {
        Ok(self.load(Some(id)).await?.pop())
    }

    /// Every key, or the one `only` names.
    async fn load(&self, only: Option<KeyId>) -> Result<Vec<StoredKey>, StorageError> {
        let only = only.map(|id| id.to_string());
        // `$1` is NULL for every key.
        let filter = "WHERE ($1::text IS NULL OR key_id = $1::text)";
        let mut c = self.client().await?;
        // One snapshot for every table, so a key and its versions agree.
        let tx = c
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let mut keys: BTreeMap<KeyId, StoredKey> = BTreeMap::new();
        for r in tx
            .query(
                &format!(
                    "SELECT key_id, description, state, created_at_ms, primary_version, rotation_period_days,
                            next_rotation_at_ms, deletion_at_ms, key_spec, key_usage, origin, valid_to_ms,
                            import_fingerprint
                     FROM keys {filter}"
                ),
                &[&only],
            )
            .await?
        {
            let id = parse_key_id(r.get(0))?;
            let state: &str = r.get(2);
            let record = KmsKey {
                id,
                description: r.get(1),
                state: State::parse(state)
                    .ok_or_else(|| StorageError::Corrupt(format!("key state {state:?}")))?,
                created_at: UnixMillis(r.get(3)),
                primary_version: version_number(r.get(4))?,
                rotation_period_days: r
                    .get::<_, Option<i32>>(5)
                    .map(|d| {
                        u32::try_from(d)
                            .map_err(|_| StorageError::Corrupt(format!("rotation period {d}")))
                    })
                    .transpose()?,
                next_rotation_at: r.get::<_, Option<i64>>(6).map(UnixMillis),
                deletion_at: r.get::<_, Option<i64>>(7).map(UnixMillis),
                tags: BTreeMap::new(),
                kind: key_kind(r.get(8), r.get(9))?,
                origin: origin(r.get(10))?,
                valid_to: r.get::<_, Option<i64>>(11).map(UnixMillis),
                import_fingerprint: r.get(12),
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
        fn key<'k>(
            keys: &'k mut BTreeMap<KeyId, StoredKey>,
            s: &str,
        ) -> Result<&'k mut StoredKey, StorageError> {
            let id = parse_key_id(s)?;
            keys.get_mut(&id)
                .ok_or_else(|| StorageError::Corrupt(format!("row refers to missing key {id}")))
        }
        for r in tx
            .query(
                &format!("SELECT key_id, name, value FROM key_tags {filter}"),
                &[&only],
            )
            .await?
        {
            key(&mut keys, r.get(0))?
                .record
                .tags
                .insert(r.get(1), r.get(2));
        }
        for r in tx
            .query(
                &format!(
                    "SELECT key_id, version, created_at_ms, wrapped_material FROM key_versions {filter}
                     ORDER BY key_id, version"
                ),
                &[&only],
            )
            .await?
        {
            key(&mut keys, r.get(0))?.versions.push(VersionRow {
                version: version_number(r.get(1))?,
                created_at: UnixMillis(r.get(2)),
                wrapped_material: r.get(3),
            });
        }
        for r in tx
            .query(
                &format!("SELECT alias_name, key_id, created_at_ms FROM aliases {filter}"),
                &[&only],
            )
            .await?
        {
            let name: &str = r.get(0);
            let key_id: &str = r.get(1);
            let alias = AliasRow {
                name: AliasName::parse(name)
                    .map_err(|_| StorageError::Corrupt(format!("alias {name:?}")))?,
                key_id: parse_key_id(key_id)?,
                created_at: UnixMillis(r.get(2)),
            };
            key(&mut keys, key_id)?.aliases.push(alias);
        }
        for r in tx
            .query(
                &format!("SELECT key_id, policy FROM key_policies {filter}"),
                &[&only],
            )
            .await?
        {
            key(&mut keys, r.get(0))?.policy = Some(r.get(1));
        }
        tx.commit().await?;
        Ok(keys.into_values().collect())
    }

    /// The number of the last change in the log.
    pub async fn change_head(&self) -> Result<u64, StorageError> {
        let c = self.client().await?;
        let seq: i64 = c
            .query_one("SELECT seq FROM change_head", &[])
            .await?
            .get(0);
        Ok(seq as u64)
    }

    /// The subjects of `kind`'s changes after `after`, and the head they were read at (one snapshot).
    pub async fn changes_after(
        &self,
        after: u64,
        kind: ChangeKind,
    ) -> Result<Changes, StorageError> {
        let c = self.client().await?;
        let row = c
            .query_one(
                "SELECT (SELECT seq FROM change_head),
                        (SELECT MIN(seq) FROM changes),
                        ARRAY(SELECT DISTINCT subject FROM changes WHERE seq > $1 AND kind = $2)",
                &[&(after as i64), &kind.as_str()],
            )
            .await?;
        let head: i64 = row.get(0);
        let oldest: Option<i64> = row.get(1);
        let head = head as u64;
        Ok(Changes {
            head,
            subjects: row.get(2),
            // Rows after `after` were trimmed before they were read: only a full reload is exact.
            gap: after < head && oldest.is_none_or(|oldest| oldest as u64 > after + 1),
        })
    }

    /// Removes change-log rows older than `keep`; a replica further behind than that reloads everything.
    pub async fn trim_changes(&self, keep: std::time::Duration) -> Result<u64, StorageError> {
        let c = self.client().await?;
        Ok(c.execute(
            "DELETE FROM changes WHERE at < now() - make_interval(secs => $1)",
            &[&keep.as_secs_f64()],
        )
        .await?)
    }

    /// Runs `change` in a transaction that also logs it, as a change of `kind` to `subject`, and commits: what
    /// every management change does, so the other replicas hear of it.
    async fn logged<R>(
        &self,
        kind: ChangeKind,
        subject: &str,
        change: impl AsyncFnOnce(&deadpool_postgres::Transaction<'_>) -> Result<R, StorageError>,
    ) -> Result<R, StorageError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let result = change(&tx).await?;
        log_change(&tx, kind, subject).await?;
        tx.commit().await?;
        Ok(result)
    }

    pub async fn insert_key(
        &self,
        record: KmsKey,
        version: VersionRow,
        alias: Option<AliasRow>,
        policy: Option<String>,
    ) -> Result<(), StorageError> {
        let id = record.id.to_string();
        self.logged(ChangeKind::Key, &id, async |tx| {
            insert_key_row(tx, &record).await?;
            insert_version(tx, record.id, &version).await?;
            if let Some(alias) = &alias {
                insert_alias(tx, alias).await?;
            }
            if let Some(policy) = &policy {
                set_policy(tx, record.id, policy, record.created_at).await?;
            }
            Ok(())
        })
        .await
    }

    pub async fn set_key_policy(
        &self,
        key_id: KeyId,
        policy: String,
        at: UnixMillis,
    ) -> Result<(), StorageError> {
        self.logged(ChangeKind::Key, &key_id.to_string(), async |tx| {
            set_policy(tx, key_id, &policy, at).await
        })
        .await
    }

    pub async fn update_key(&self, record: KmsKey) -> Result<(), StorageError> {
        self.logged(ChangeKind::Key, &record.id.to_string(), async |tx| {
            update_key(tx, &record).await
        })
        .await
    }

    pub async fn add_version(
        &self,
        record: KmsKey,
        version: VersionRow,
    ) -> Result<(), StorageError> {
        self.logged(ChangeKind::Key, &record.id.to_string(), async |tx| {
            insert_version(tx, record.id, &version).await?;
            update_key(tx, &record).await
        })
        .await
    }

    pub async fn set_material(
        &self,
        record: KmsKey,
        version: u32,
        wrapped: Option<Vec<u8>>,
    ) -> Result<(), StorageError> {
        let id = record.id.to_string();
        self.logged(ChangeKind::Key, &id, async |tx| {
            update_key(tx, &record).await?;
            let changed = tx
                .execute(
                    "UPDATE key_versions SET wrapped_material = $3 WHERE key_id = $1 AND version = $2",
                    &[&id, &(version as i32), &wrapped],
                )
                .await?;
            if changed != 1 {
                return Err(StorageError::Corrupt(format!(
                    "key {id} has no version {version}"
                )));
            }
            Ok(())
        })
        .await
    }

    pub async fn destroy_key(&self, record: KmsKey) -> Result<(), StorageError> {
        let id = record.id.to_string();
        self.logged(ChangeKind::Key, &id, async |tx| {
            update_key(tx, &record).await?;
            tx.execute(
                "UPDATE key_versions SET wrapped_material = NULL WHERE key_id = $1",
                &[&id],
            )
            .await?;
            tx.execute("DELETE FROM aliases WHERE key_id = $1", &[&id])
                .await?;
            Ok(())
        })
        .await
    }

    pub async fn insert_alias(&self, alias: AliasRow) -> Result<(), StorageError> {
        self.logged(ChangeKind::Key, &alias.key_id.to_string(), async |tx| {
            insert_alias(tx, &alias).await
        })
        .await
    }

    /// Returns whether the alias existed. (The change logged names the key it pointed to, so it is read first.)
    pub async fn delete_alias(&self, name: String) -> Result<bool, StorageError> {
        let c = self.client().await?;
        let Some(row) = c
            .query_opt("SELECT key_id FROM aliases WHERE alias_name = $1", &[&name])
            .await?
        else {
            return Ok(false);
        };
        drop(c);
        let key_id: String = row.get(0);
        self.logged(ChangeKind::Key, &key_id, async |tx| {
            Ok(tx
                .execute(
                    "DELETE FROM aliases WHERE alias_name = $1 AND key_id = $2",
                    &[&name, &key_id],
                )
                .await?
                == 1)
        })
        .await
    }

    /// Returns whether the alias named `from` (and now names `to`). Both keys' changes are logged: each replica
    /// reloads both, so the alias leaves one cache entry and joins the other.
    pub async fn move_alias(
        &self,
        name: String,
        from: KeyId,
        to: KeyId,
    ) -> Result<bool, StorageError> {
        self.logged(ChangeKind::Key, &to.to_string(), async |tx| {
            let moved = tx
                .execute(
                    "UPDATE aliases SET key_id = $3 WHERE alias_name = $1 AND key_id = $2",
                    &[&name, &from.to_string(), &to.to_string()],
                )
                .await?
                == 1;
            log_change(tx, ChangeKind::Key, &from.to_string()).await?;
            Ok(moved)
        })
        .await
    }

    pub async fn versions_of(&self, key_id: KeyId) -> Result<Vec<VersionRow>, StorageError> {
        let c = self.client().await?;
        c.query(
            "SELECT version, created_at_ms, wrapped_material FROM key_versions WHERE key_id = $1
             ORDER BY version",
            &[&key_id.to_string()],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(VersionRow {
                version: version_number(r.get(0))?,
                created_at: UnixMillis(r.get(1)),
                wrapped_material: r.get(2),
            })
        })
        .collect()
    }

    pub async fn load_access(&self) -> Result<AccessRows, StorageError> {
        let mut c = self.client().await?;
        let tx = c
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let mut principals: Vec<PrincipalRow> = tx
            .query(
                "SELECT name, description, admin, create_keys, created_at_ms, disabled_at_ms
                 FROM principals ORDER BY name",
                &[],
            )
            .await?
            .iter()
            .map(|r| PrincipalRow {
                name: r.get(0),
                description: r.get(1),
                admin: r.get(2),
                create_keys: r.get(3),
                created_at: UnixMillis(r.get(4)),
                disabled_at: r.get::<_, Option<i64>>(5).map(UnixMillis),
                certificate_subjects: Vec::new(),
            })
            .collect();
        for r in tx
            .query(
                "SELECT subject, principal FROM principal_certificates ORDER BY subject",
                &[],
            )
            .await?
        {
            let name: &str = r.get(1);
            let p = principals
                .iter_mut()
                .find(|p| p.name == name)
                .ok_or_else(|| {
                    StorageError::Corrupt(format!(
                        "certificate subject of missing principal {name:?}"
                    ))
                })?;
            p.certificate_subjects.push(r.get(0));
        }
        let tokens = tx
            .query(
                "SELECT token_id, principal, description, secret_hash, created_at_ms, expires_at_ms, revoked_at_ms
                 FROM tokens ORDER BY created_at_ms, token_id",
                &[],
            )
            .await?
            .iter()
            .map(|r| {
                let hash: &[u8] = r.get(3);
                Ok(TokenRow {
                    id: r.get(0),
                    principal: r.get(1),
                    description: r.get(2),
                    secret_hash: hash
                        .try_into()
                        .map_err(|_| StorageError::Corrupt("a token hash is not 32 bytes".into()))?,
                    created_at: UnixMillis(r.get(4)),
                    expires_at: r.get::<_, Option<i64>>(5).map(UnixMillis),
                    revoked_at: r.get::<_, Option<i64>>(6).map(UnixMillis),
                })
            })
            .collect::<Result<_, StorageError>>()?;
        let access_keys = tx
            .query(
                "SELECT access_key_id, principal, description, wrapped_secret, created_at_ms, revoked_at_ms
                 FROM access_keys ORDER BY created_at_ms, access_key_id",
                &[],
            )
            .await?
            .iter()
            .map(|r| AccessKeyRow {
                id: r.get(0),
                principal: r.get(1),
                description: r.get(2),
                wrapped_secret: r.get(3),
                created_at: UnixMillis(r.get(4)),
                revoked_at: r.get::<_, Option<i64>>(5).map(UnixMillis),
            })
            .collect();
        tx.commit().await?;
        Ok(AccessRows {
            principals,
            tokens,
            access_keys,
        })
    }

    pub async fn insert_principal(&self, p: PrincipalRow) -> Result<(), StorageError> {
        self.logged(ChangeKind::Access, &p.name, async |tx| {
            insert_principal(tx, &p).await
        })
        .await
    }

    pub async fn disable_principal(
        &self,
        name: String,
        at: UnixMillis,
    ) -> Result<(), StorageError> {
        self.logged(ChangeKind::Access, &name, async |tx| {
            stamp(
                tx,
                "UPDATE principals SET disabled_at_ms = $2 WHERE name = $1",
                &name,
                at,
                |name| format!("principal {name:?}"),
            )
            .await
        })
        .await
    }

    pub async fn insert_token(&self, t: TokenRow) -> Result<(), StorageError> {
        self.logged(ChangeKind::Access, &t.id, async |tx| {
            insert_token(tx, &t).await
        })
        .await
    }

    pub async fn revoke_token(&self, id: String, at: UnixMillis) -> Result<(), StorageError> {
        self.logged(ChangeKind::Access, &id, async |tx| {
            stamp(
                tx,
                "UPDATE tokens SET revoked_at_ms = $2 WHERE token_id = $1",
                &id,
                at,
                |id| format!("token {id}"),
            )
            .await
        })
        .await
    }

    pub async fn insert_access_key(&self, k: AccessKeyRow) -> Result<(), StorageError> {
        self.logged(ChangeKind::Access, &k.id, async |tx| {
            insert_access_key(tx, &k).await
        })
        .await
    }

    pub async fn revoke_access_key(&self, id: String, at: UnixMillis) -> Result<(), StorageError> {
        self.logged(ChangeKind::Access, &id, async |tx| {
            stamp(
                tx,
                "UPDATE access_keys SET revoked_at_ms = $2 WHERE access_key_id = $1",
                &id,
                at,
                |id| format!("access key {id}"),
            )
            .await
        })
        .await
    }
}

/// A key's row and its tags.
pub(super) async fn insert_key_row(
    c: &impl GenericClient,
    record: &KmsKey,
) -> Result<(), StorageError> {
    let id = record.id.to_string();
    c.execute(
        "INSERT INTO keys (key_id, description, state, created_at_ms, primary_version, rotation_period_days,
                           next_rotation_at_ms, deletion_at_ms, key_spec, key_usage, origin, valid_to_ms,
                           import_fingerprint)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        &[
            &id,
            &record.description,
            &record.state.as_str(),
            &record.created_at.0,
            &(record.primary_version as i32),
            &record.rotation_period_days.map(|d| d as i32),
            &millis(record.next_rotation_at),
            &millis(record.deletion_at),
            &record.kind.spec.as_str(),
            &record.kind.usage.as_str(),
            &record.origin.as_str(),
            &millis(record.valid_to),
            &record.import_fingerprint,
        ],
    )
    .await?;
    for (name, value) in &record.tags {
        c.execute(
            "INSERT INTO key_tags (key_id, name, value) VALUES ($1, $2, $3)",
            &[&id, name, value],
        )
        .await?;
    }
    Ok(())
}

pub(super) async fn insert_principal(
    c: &impl GenericClient,
    p: &PrincipalRow,
) -> Result<(), StorageError> {
    c.execute(
        "INSERT INTO principals (name, description, admin, create_keys, created_at_ms, disabled_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &p.name,
            &p.description,
            &p.admin,
            &p.create_keys,
            &p.created_at.0,
            &millis(p.disabled_at),
        ],
    )
    .await?;
    for subject in &p.certificate_subjects {
        c.execute(
            "INSERT INTO principal_certificates (subject, principal) VALUES ($1, $2)",
            &[subject, &p.name],
        )
        .await?;
    }
    Ok(())
}

pub(super) async fn insert_token(c: &impl GenericClient, t: &TokenRow) -> Result<(), StorageError> {
    c.execute(
        "INSERT INTO tokens (token_id, principal, description, secret_hash, created_at_ms, expires_at_ms,
                             revoked_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &t.id,
            &t.principal,
            &t.description,
            &t.secret_hash.as_slice(),
            &t.created_at.0,
            &millis(t.expires_at),
            &millis(t.revoked_at),
        ],
    )
    .await?;
    Ok(())
}

/// Sets one row's time column (`sql` takes the row's key as $1 and the time as $2): a disabled principal, a revoked
/// token or access key. A row that is not there is corruption: the caller found it in memory first.
async fn stamp(
    c: &impl GenericClient,
    sql: &str,
    key: &str,
    at: UnixMillis,
    what: impl Fn(&str) -> String,
) -> Result<(), StorageError> {
    if c.execute(sql, &[&key, &at.0]).await? != 1 {
        return Err(StorageError::Corrupt(format!(
            "{} is not stored",
            what(key)
        )));
    }
    Ok(())
}

pub(super) async fn insert_access_key(
    c: &impl GenericClient,
    k: &AccessKeyRow,
) -> Result<(), StorageError> {
    c.execute(
        "INSERT INTO access_keys (access_key_id, principal, description, wrapped_secret, created_at_ms,
                                  revoked_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &k.id,
            &k.principal,
            &k.description,
            &k.wrapped_secret,
            &k.created_at.0,
            &millis(k.revoked_at),
        ],
    )
    .await?;
    Ok(())
}

/// Gives the change the next number of the cluster-wide order (the head row stays locked until the transaction
/// ends) and notifies every replica when it commits.
async fn log_change(
    c: &impl GenericClient,
    kind: ChangeKind,
    subject: &str,
) -> Result<(), StorageError> {
    c.execute(
        "WITH next AS (UPDATE change_head SET seq = seq + 1 RETURNING seq),
              logged AS (INSERT INTO changes (seq, kind, subject) SELECT seq, $1, $2 FROM next RETURNING seq)
         SELECT pg_notify($3, seq::text) FROM logged",
        &[&kind.as_str(), &subject, &CHANGES_CHANNEL],
    )
    .await?;
    Ok(())
}

/// Writes every mutable field of a key's record: its state, versions, rotation, deletion, description and tags.
async fn update_key(c: &impl GenericClient, record: &KmsKey) -> Result<(), StorageError> {
    let id = record.id.to_string();
    let changed = c
        .execute(
            "UPDATE keys SET state = $2, primary_version = $3, next_rotation_at_ms = $4, deletion_at_ms = $5,
                             description = $6, rotation_period_days = $7, valid_to_ms = $8,
                             import_fingerprint = $9
             WHERE key_id = $1",
            &[
                &id,
                &record.state.as_str(),
                &(record.primary_version as i32),
                &millis(record.next_rotation_at),
                &millis(record.deletion_at),
                &record.description,
                &record.rotation_period_days.map(|d| d as i32),
                &millis(record.valid_to),
                &record.import_fingerprint,
            ],
        )
        .await?;
    if changed != 1 {
        return Err(StorageError::Corrupt(format!(
            "key {} is not stored",
            record.id
        )));
    }
    c.execute("DELETE FROM key_tags WHERE key_id = $1", &[&id])
        .await?;
    for (name, value) in &record.tags {
        c.execute(
            "INSERT INTO key_tags (key_id, name, value) VALUES ($1, $2, $3)",
            &[&id, name, value],
        )
        .await?;
    }
    Ok(())
}

pub(super) async fn insert_version(
    c: &impl GenericClient,
    key_id: KeyId,
    version: &VersionRow,
) -> Result<(), StorageError> {
    c.execute(
        "INSERT INTO key_versions (key_id, version, created_at_ms, wrapped_material) VALUES ($1, $2, $3, $4)",
        &[
            &key_id.to_string(),
            &(version.version as i32),
            &version.created_at.0,
            &version.wrapped_material,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn insert_alias(
    c: &impl GenericClient,
    alias: &AliasRow,
) -> Result<(), StorageError> {
    c.execute(
        "INSERT INTO aliases (alias_name, key_id, created_at_ms) VALUES ($1, $2, $3)",
        &[
            &alias.name.as_str(),
            &alias.key_id.to_string(),
            &alias.created_at.0,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn set_policy(
    c: &impl GenericClient,
    key_id: KeyId,
    policy: &str,
    at: UnixMillis,
) -> Result<(), StorageError> {
    c.execute(
        "INSERT INTO key_policies (key_id, policy, updated_at_ms) VALUES ($1, $2, $3)
         ON CONFLICT (key_id) DO UPDATE SET policy = excluded.policy, updated_at_ms = excluded.updated_at_ms",
        &[&key_id.to_string(), &policy, &at.0],
    )
    .await?;
    Ok(())
}
