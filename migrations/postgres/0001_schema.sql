-- kmsd on PostgreSQL: the same tables as the SQLite migrations 0001-0005 reach, in PostgreSQL's types.
-- Times are UTC milliseconds since the Unix epoch. Key material is stored only wrapped under the root key; token
-- secrets only as hashes. See ARCHITECTURE.md, "Storage".

CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);

CREATE TABLE keys (
    key_id               TEXT PRIMARY KEY,
    description          TEXT NOT NULL,
    state                TEXT NOT NULL
        CHECK (state IN ('ENABLED', 'DISABLED', 'PENDING_DELETION', 'DESTROYED')),
    created_at_ms        BIGINT NOT NULL,
    primary_version      INTEGER NOT NULL CHECK (primary_version >= 1),
    rotation_period_days INTEGER CHECK (rotation_period_days IS NULL OR rotation_period_days >= 1),
    next_rotation_at_ms  BIGINT,
    deletion_at_ms       BIGINT,
    CHECK ((state IN ('PENDING_DELETION', 'DESTROYED')) = (deletion_at_ms IS NOT NULL))
);

CREATE TABLE key_tags (
    key_id TEXT NOT NULL REFERENCES keys (key_id),
    name   TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (key_id, name)
);

CREATE TABLE key_versions (
    key_id           TEXT NOT NULL REFERENCES keys (key_id),
    version          INTEGER NOT NULL CHECK (version >= 1),
    created_at_ms    BIGINT NOT NULL,
    -- nonce ‖ AES-256-GCM(root key, material, aad = label ‖ key id ‖ version) ‖ tag; NULL once destroyed.
    wrapped_material BYTEA,
    PRIMARY KEY (key_id, version)
);

CREATE TABLE aliases (
    alias_name    TEXT PRIMARY KEY,
    key_id        TEXT NOT NULL REFERENCES keys (key_id),
    created_at_ms BIGINT NOT NULL
);

CREATE INDEX aliases_by_key ON aliases (key_id);

CREATE TABLE key_policies (
    key_id        TEXT PRIMARY KEY REFERENCES keys (key_id),
    policy        TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

CREATE TABLE principals (
    name           TEXT PRIMARY KEY,
    description    TEXT NOT NULL,
    admin          BOOLEAN NOT NULL,
    create_keys    BOOLEAN NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    disabled_at_ms BIGINT
);

CREATE TABLE principal_certificates (
    subject   TEXT PRIMARY KEY,
    principal TEXT NOT NULL REFERENCES principals (name)
);

CREATE TABLE tokens (
    token_id      TEXT PRIMARY KEY,
    principal     TEXT NOT NULL REFERENCES principals (name),
    description   TEXT NOT NULL,
    secret_hash   BYTEA NOT NULL CHECK (octet_length(secret_hash) = 32),
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT,
    revoked_at_ms BIGINT
);

-- The audit log: one row per call, in one hash chain shared by every replica, append-only. A writer appends a batch
-- in one transaction holding a transaction-scoped advisory lock; the primary key on seq makes a fork impossible even
-- if the lock were not taken.
CREATE TABLE audit_events (
    seq                BIGINT PRIMARY KEY,    -- gap-free from 1
    event_id           TEXT NOT NULL,
    event_time         TEXT NOT NULL,         -- RFC 3339 UTC with milliseconds; sorts as time
    event_name         TEXT NOT NULL,
    principal          TEXT NOT NULL,
    source_address     TEXT NOT NULL,
    user_agent         TEXT NOT NULL,
    request_id         TEXT NOT NULL,
    key_id             TEXT,
    key_version        BIGINT,
    key_alias          TEXT,
    parameters         TEXT NOT NULL,         -- canonical JSON object of strings, as hashed
    encryption_context TEXT NOT NULL,         -- canonical JSON object of strings, as hashed
    reason             TEXT,
    outcome            TEXT NOT NULL CHECK (outcome IN ('success', 'error', 'denied')),
    error_code         TEXT,
    error_message      TEXT,
    prev_hash          TEXT NOT NULL,         -- hex SHA-256
    hash               TEXT NOT NULL          -- hex SHA-256 of the canonical encoding
);

CREATE INDEX audit_events_by_time ON audit_events (event_time);
CREATE INDEX audit_events_by_key ON audit_events (key_id, seq) WHERE key_id IS NOT NULL;
CREATE INDEX audit_events_by_request ON audit_events (request_id);

CREATE TABLE audit_checkpoints (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    head_seq   BIGINT NOT NULL,
    head_hash  TEXT NOT NULL,
    time       TEXT NOT NULL,
    log_id     TEXT NOT NULL,
    signature  TEXT NOT NULL                  -- hex Ed25519 over the canonical encoding
);

-- A signed mark saying up to which record an archived range was removed (src/audit/archive.rs).
CREATE TABLE audit_prunes (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    through_seq  BIGINT NOT NULL,
    through_hash TEXT NOT NULL,
    time         TEXT NOT NULL,
    log_id       TEXT NOT NULL,
    signature    TEXT NOT NULL
);

-- Append-only: no UPDATE or TRUNCATE of the audit tables, no DELETE except of records a prune mark covers.
CREATE FUNCTION kmsd_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'kmsd audit tables are append-only (% on %)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE FUNCTION kmsd_audit_delete_pruned_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.seq > (SELECT COALESCE(MAX(through_seq), 0) FROM audit_prunes) THEN
        RAISE EXCEPTION 'audit records are append-only; only an archived range is removed, by kmsctl audit archive'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN OLD;
END
$$;

-- Statement triggers refuse a statement even when it matches no row; DELETE on audit_events is checked row by row.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE OR TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION kmsd_audit_append_only();
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION kmsd_audit_delete_pruned_only();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION kmsd_audit_append_only();
CREATE TRIGGER audit_prunes_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_prunes
    FOR EACH STATEMENT EXECUTE FUNCTION kmsd_audit_append_only();
