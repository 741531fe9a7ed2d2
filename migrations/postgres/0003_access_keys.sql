-- AWS-style access keys (the AWS-compatible endpoint's SigV4 credentials). Unlike a bearer token, whose hash is
-- enough to check it, a SigV4 signature can only be verified with the secret itself: it is stored wrapped under the
-- root key (AES-256-GCM, bound to the access key id), like the audit signing key, and never in clear. Changes are
-- logged as kind 'access', like tokens.

CREATE TABLE access_keys (
    access_key_id  TEXT PRIMARY KEY,
    principal      TEXT NOT NULL REFERENCES principals (name),
    description    TEXT NOT NULL,
    wrapped_secret BYTEA NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    revoked_at_ms  BIGINT
);
