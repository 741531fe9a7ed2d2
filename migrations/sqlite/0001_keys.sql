-- Customer master keys, their versions and aliases.
-- Times are UTC milliseconds since the Unix epoch. Key material is stored only wrapped under the root key.

CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;

CREATE TABLE keys (
    key_id               TEXT PRIMARY KEY,
    description          TEXT NOT NULL,
    state                TEXT NOT NULL
        CHECK (state IN ('ENABLED', 'DISABLED', 'PENDING_DELETION', 'DESTROYED')),
    created_at_ms        INTEGER NOT NULL,
    primary_version      INTEGER NOT NULL CHECK (primary_version >= 1),
    rotation_period_days INTEGER CHECK (rotation_period_days IS NULL OR rotation_period_days >= 1),
    next_rotation_at_ms  INTEGER,
    deletion_at_ms       INTEGER,
    CHECK ((state IN ('PENDING_DELETION', 'DESTROYED')) = (deletion_at_ms IS NOT NULL))
) STRICT;

CREATE TABLE key_tags (
    key_id TEXT NOT NULL REFERENCES keys (key_id),
    name   TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (key_id, name)
) STRICT, WITHOUT ROWID;

CREATE TABLE key_versions (
    key_id           TEXT NOT NULL REFERENCES keys (key_id),
    version          INTEGER NOT NULL CHECK (version >= 1),
    created_at_ms    INTEGER NOT NULL,
    -- nonce ‖ AES-256-GCM(root key, material, aad = label ‖ key id ‖ version) ‖ tag; NULL once destroyed.
    wrapped_material BLOB,
    PRIMARY KEY (key_id, version)
) STRICT, WITHOUT ROWID;

CREATE TABLE aliases (
    alias_name    TEXT PRIMARY KEY,
    key_id        TEXT NOT NULL REFERENCES keys (key_id),
    created_at_ms INTEGER NOT NULL
) STRICT;

CREATE INDEX aliases_by_key ON aliases (key_id);
