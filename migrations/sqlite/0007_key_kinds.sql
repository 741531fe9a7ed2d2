-- A key's kind, fixed at creation: its spec (what its material is: SYMMETRIC_DEFAULT, HMAC_256, RSA_2048,
-- ECC_NIST_P256, ...) and its usage (ENCRYPT_DECRYPT, SIGN_VERIFY, GENERATE_VERIFY_MAC), with AWS KMS's names. Every
-- key made before there were kinds is a symmetric encryption key. A version's wrapped material is then the 32 bytes
-- of a symmetric key, an HMAC key's bytes, or a key pair's PKCS#8 private key, wrapped as before with the spec bound
-- into the wrapping's associated data (except for SYMMETRIC_DEFAULT, whose versions read as they always did).

ALTER TABLE keys ADD COLUMN key_spec TEXT NOT NULL DEFAULT 'SYMMETRIC_DEFAULT';
ALTER TABLE keys ADD COLUMN key_usage TEXT NOT NULL DEFAULT 'ENCRYPT_DECRYPT';
