-- Archival: a sealed, archived range of the audit log may be removed, and only through kmsd (`kmsctl audit archive`),
-- which first stores a mark signed with the log's key saying up to which record, and with which hash, the log was
-- pruned. Verification starts the chain after the last valid mark; a deletion without one (a raw DELETE after
-- dropping the trigger) leaves a gap no mark explains, and is reported.

CREATE TABLE audit_prunes (
    id           INTEGER PRIMARY KEY,
    through_seq  INTEGER NOT NULL,
    through_hash TEXT NOT NULL,           -- hex SHA-256 of record through_seq: the next record's prev_hash
    time         TEXT NOT NULL,
    log_id       TEXT NOT NULL,
    signature    TEXT NOT NULL            -- hex Ed25519 over the canonical encoding (src/audit/checkpoint.rs)
) STRICT;

CREATE TRIGGER audit_prunes_no_update BEFORE UPDATE ON audit_prunes
BEGIN
    SELECT RAISE(ABORT, 'audit prune marks are append-only');
END;

CREATE TRIGGER audit_prunes_no_delete BEFORE DELETE ON audit_prunes
BEGIN
    SELECT RAISE(ABORT, 'audit prune marks are append-only');
END;

-- Rows stay append-only, except those a prune mark covers.
DROP TRIGGER audit_events_no_delete;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
WHEN OLD.seq > (SELECT COALESCE(MAX(through_seq), 0) FROM audit_prunes)
BEGIN
    SELECT RAISE(ABORT, 'audit records are append-only; only an archived range is removed, by kmsctl audit archive');
END;
