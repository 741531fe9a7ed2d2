-- The change log: every management change (keys, aliases, policies, principals, tokens) takes the next number here
-- in the transaction that makes it, and notifies `kmsd_changes` on commit. Every replica LISTENs, and applies the
-- changes above the number it has applied to its caches (polling as a backstop), so a revocation on one replica
-- reaches the others within the bound ARCHITECTURE.md states. The head row's lock orders the changes cluster-wide.

CREATE TABLE change_head (
    one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    seq BIGINT NOT NULL
);
INSERT INTO change_head (one, seq) VALUES (TRUE, 0);

CREATE TABLE changes (
    seq     BIGINT PRIMARY KEY,
    kind    TEXT NOT NULL CHECK (kind IN ('key', 'access')),
    -- The key id for 'key', the principal or token for 'access' (a replica reloads the whole access state).
    subject TEXT NOT NULL,
    at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
