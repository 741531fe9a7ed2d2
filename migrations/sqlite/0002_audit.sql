-- The audit log: one row per call, in a hash chain, append-only. See ARCHITECTURE.md, "Audit log".

CREATE TABLE audit_events (
    seq                INTEGER PRIMARY KEY,   -- gap-free from 1
    event_id           TEXT NOT NULL,
    event_time         TEXT NOT NULL,         -- RFC 3339 UTC with milliseconds; sorts as time
    event_name         TEXT NOT NULL,
    principal          TEXT NOT NULL,
    source_address     TEXT NOT NULL,
    user_agent         TEXT NOT NULL,
    request_id         TEXT NOT NULL,
    key_id             TEXT,
    key_version        INTEGER,
    key_alias          TEXT,
    parameters         TEXT NOT NULL,         -- canonical JSON object of strings
    encryption_context TEXT NOT NULL,         -- canonical JSON object of strings
    reason             TEXT,
    -- Not `IN (...)`: SQLite builds an ephemeral table for that on every insert.
    outcome            TEXT NOT NULL CHECK (outcome = 'success' OR outcome = 'error' OR outcome = 'denied'),
    error_code         TEXT,
    error_message      TEXT,
    prev_hash          TEXT NOT NULL,         -- hex SHA-256
    hash               TEXT NOT NULL          -- hex SHA-256 of the canonical encoding
) STRICT;

CREATE INDEX audit_events_by_time ON audit_events (event_time);
CREATE INDEX audit_events_by_key ON audit_events (key_id, seq) WHERE key_id IS NOT NULL;
CREATE INDEX audit_events_by_request ON audit_events (request_id);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit records are append-only');
END;

CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit records are append-only');
END;

CREATE TABLE audit_checkpoints (
    id         INTEGER PRIMARY KEY,
    head_seq   INTEGER NOT NULL,
    head_hash  TEXT NOT NULL,
    time       TEXT NOT NULL,
    log_id     TEXT NOT NULL,
    signature  TEXT NOT NULL                  -- hex Ed25519 over the canonical encoding
) STRICT;

CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only');
END;

CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only');
END;
