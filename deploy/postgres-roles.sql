-- Least privilege for the role kmsd replicas serve as.
--
-- The tables belong to an owner role, which runs the migrations: start one kmsd with the owner's URL (or run it so
-- after each upgrade), and the schema is migrated under an advisory lock. Then, as the owner, run
--
--     psql "$OWNER_URL" -v app=kmsd_app -f deploy/postgres-roles.sql
--
-- and give the replicas a database_url with the `app` role. It can read and write keys, principals, tokens and
-- access keys, and only append to the audit log: no UPDATE or TRUNCATE of audit tables, DELETE of audit records only
-- of a range an archive's signed prune mark covers (a trigger refuses the rest), and no ownership, so it cannot drop
-- the triggers either. kmsd warns at start when its role could rewrite audit records.

GRANT SELECT, INSERT, UPDATE, DELETE
    ON meta, keys, key_tags, key_versions, aliases, key_policies, principals, principal_certificates, tokens,
       access_keys
    TO :"app";
GRANT SELECT ON kmsd_migrations TO :"app";
GRANT SELECT, UPDATE ON change_head TO :"app";
GRANT SELECT, INSERT, DELETE ON changes TO :"app";
GRANT SELECT, INSERT, DELETE ON audit_events TO :"app";
GRANT SELECT, INSERT ON audit_checkpoints, audit_prunes TO :"app";
