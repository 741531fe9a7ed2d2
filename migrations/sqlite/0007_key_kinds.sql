-- A key's kind and origin, fixed at creation, and the state PENDING_IMPORT.
--
-- Kind: its spec (what its material is: SYMMETRIC_DEFAULT, HMAC_256, RSA_2048, ECC_NIST_P256, ...) and its usage
-- (ENCRYPT_DECRYPT, SIGN_VERIFY, GENERATE_VERIFY_MAC), with AWS KMS's names. Every key made before there were kinds
-- is a symmetric encryption key. A version's wrapped material is then the 32 bytes of a symmetric key, an HMAC key's
-- bytes, or a key pair's PKCS#8 private key, wrapped as before with the spec bound into the wrapping's associated
-- data (except for SYMMETRIC_DEFAULT, whose versions read as they always did).
--
-- Origin: KMSD (kmsd made the material) or EXTERNAL (imported: GetParametersForImport, ImportKeyMaterial). An
-- EXTERNAL key's version 1 has no material (NULL) while the key is PENDING_IMPORT. valid_to_ms: when imported
-- material expires (NULL: never). import_fingerprint: SHA-256 (hex) of the first material imported (of its public
-- key, for key pairs), bound to the key id, which any later import must match; kept after the material is deleted.
--
-- SQLite cannot change a CHECK constraint, so the table is rebuilt (the migration runs with foreign keys off and
-- checks them before it commits; the tables that reference keys(key_id) then reference the new table).

CREATE TABLE keys_new (
    key_id               TEXT PRIMARY KEY,
    description          TEXT NOT NULL,
    state                TEXT NOT NULL
        CHECK (state IN ('ENABLED', 'DISABLED', 'PENDING_DELETION', 'DESTROYED', 'PENDING_IMPORT')),
    created_at_ms        INTEGER NOT NULL,
    primary_version      INTEGER NOT NULL CHECK (primary_version >= 1),
    rotation_period_days INTEGER CHECK (rotation_period_days IS NULL OR rotation_period_days >= 1),
    next_rotation_at_ms  INTEGER,
    deletion_at_ms       INTEGER,
    key_spec             TEXT NOT NULL DEFAULT 'SYMMETRIC_DEFAULT',
    key_usage            TEXT NOT NULL DEFAULT 'ENCRYPT_DECRYPT',
    origin               TEXT NOT NULL DEFAULT 'KMSD' CHECK (origin IN ('KMSD', 'EXTERNAL')),
    valid_to_ms          INTEGER,
    import_fingerprint   TEXT,
    CHECK ((state IN ('PENDING_DELETION', 'DESTROYED')) = (deletion_at_ms IS NOT NULL))
) STRICT;

INSERT INTO keys_new (key_id, description, state, created_at_ms, primary_version, rotation_period_days,
                      next_rotation_at_ms, deletion_at_ms)
SELECT key_id, description, state, created_at_ms, primary_version, rotation_period_days, next_rotation_at_ms,
       deletion_at_ms
FROM keys;

DROP TABLE keys;
ALTER TABLE keys_new RENAME TO keys;
