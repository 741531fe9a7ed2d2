-- Identity and access control: principals, their bearer tokens and certificate identities, and key policies.
-- Tokens are stored only as SHA-256 hashes (see src/auth/token.rs); nothing here is secret.

CREATE TABLE principals (
    name           TEXT PRIMARY KEY,
    description    TEXT NOT NULL,
    admin          INTEGER NOT NULL CHECK (admin IN (0, 1)),
    create_keys    INTEGER NOT NULL CHECK (create_keys IN (0, 1)),
    created_at_ms  INTEGER NOT NULL,
    disabled_at_ms INTEGER
) STRICT;

-- A client certificate's identity (a URI SAN such as a SPIFFE id, or the subject CN) mapped to a principal.
CREATE TABLE principal_certificates (
    subject   TEXT PRIMARY KEY,
    principal TEXT NOT NULL REFERENCES principals (name)
) STRICT;

CREATE TABLE tokens (
    token_id      TEXT PRIMARY KEY,
    principal     TEXT NOT NULL REFERENCES principals (name),
    description   TEXT NOT NULL,
    secret_hash   BLOB NOT NULL CHECK (length(secret_hash) = 32),
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER,
    revoked_at_ms INTEGER
) STRICT;

CREATE TABLE key_policies (
    key_id        TEXT PRIMARY KEY REFERENCES keys (key_id),
    policy        TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;
