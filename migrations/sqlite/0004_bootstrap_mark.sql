-- First start now stores a mark once the administrator, its token and admin.token all exist, and a start without
-- the mark completes the bootstrap (src/server/bootstrap.rs). Databases made before the mark existed and holding
-- principals completed their bootstrap then: mark them, so their administrators' tokens are left alone.
INSERT INTO meta (name, value)
SELECT 'bootstrap_complete', X'01'
WHERE EXISTS (SELECT 1 FROM principals);
