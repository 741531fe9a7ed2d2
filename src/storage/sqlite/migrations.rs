use rusqlite::Connection;

use crate::storage::StorageError;

/// Every migration in order; the database's `user_version` is the number applied.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_keys.sql",
        include_str!("../../../migrations/sqlite/0001_keys.sql"),
    ),
    (
        "0002_audit.sql",
        include_str!("../../../migrations/sqlite/0002_audit.sql"),
    ),
    (
        "0003_access.sql",
        include_str!("../../../migrations/sqlite/0003_access.sql"),
    ),
    (
        "0004_bootstrap_mark.sql",
        include_str!("../../../migrations/sqlite/0004_bootstrap_mark.sql"),
    ),
    (
        "0005_audit_archive.sql",
        include_str!("../../../migrations/sqlite/0005_audit_archive.sql"),
    ),
    (
        "0006_access_keys.sql",
        include_str!("../../../migrations/sqlite/0006_access_keys.sql"),
    ),
    (
        "0007_key_kinds.sql",
        include_str!("../../../migrations/sqlite/0007_key_kinds.sql"),
    ),
];

pub(super) fn apply(conn: &mut Connection) -> Result<(), StorageError> {
    let known = MIGRATIONS.len() as i64;
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > known {
        return Err(StorageError::SchemaTooNew { found, known });
    }
    if found == known {
        return Ok(());
    }
    // As SQLite prescribes for changing a table's definition: foreign keys off (it cannot change inside a
    // transaction), each migration checked for dangling references before it commits, and on again afterwards.
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    let applied = apply_each(conn, found);
    conn.pragma_update(None, "foreign_keys", "ON")?;
    applied
}

fn apply_each(conn: &mut Connection, found: i64) -> Result<(), StorageError> {
    for (index, (name, sql)) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .map_err(|e| StorageError::Corrupt(format!("migration {name} failed: {e}")))?;
        let dangling: i64 =
            tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })?;
        if dangling != 0 {
            return Err(StorageError::Corrupt(format!(
                "migration {name} left {dangling} rows referring to rows that do not exist"
            )));
        }
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
        tracing::info!(migration = name, "applied database migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_migrations_is_registered_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let registered: Vec<&str> = MIGRATIONS.iter().map(|(n, _)| *n).collect();
        assert_eq!(files, registered);
        for (i, name) in registered.iter().enumerate() {
            assert!(
                name.starts_with(&format!("{:04}_", i + 1)),
                "{name} is out of sequence"
            );
        }
    }

    #[test]
    fn migrations_apply_and_are_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn).unwrap();
        apply(&mut conn).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
    }

    #[test]
    fn newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
        assert!(matches!(
            apply(&mut conn),
            Err(StorageError::SchemaTooNew { found: 999, .. })
        ));
    }
}
