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

ALTER TABLE keys ADD COLUMN key_spec TEXT NOT NULL DEFAULT 'SYMMETRIC_DEFAULT';
ALTER TABLE keys ADD COLUMN key_usage TEXT NOT NULL DEFAULT 'ENCRYPT_DECRYPT';
ALTER TABLE keys ADD COLUMN origin TEXT NOT NULL DEFAULT 'KMSD' CHECK (origin IN ('KMSD', 'EXTERNAL'));
ALTER TABLE keys ADD COLUMN valid_to_ms BIGINT;
ALTER TABLE keys ADD COLUMN import_fingerprint TEXT;

ALTER TABLE keys DROP CONSTRAINT keys_state_check;
ALTER TABLE keys ADD CONSTRAINT keys_state_check
    CHECK (state IN ('ENABLED', 'DISABLED', 'PENDING_DELETION', 'DESTROYED', 'PENDING_IMPORT'));
