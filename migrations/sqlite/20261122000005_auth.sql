-- Who may do what: users with roles, their sign-in sessions, API tokens,
-- the audit log, and admins' acknowledgements of validation warnings.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    email         TEXT    NOT NULL UNIQUE COLLATE NOCASE CHECK (length(trim(email)) > 0),
    name          TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('admin', 'marketer', 'agent')),
    -- argon2id, in PHC string form.
    password_hash TEXT    NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT    NOT NULL
);

-- A session is found by the SHA-256 of its cookie value: the database
-- never holds a value that would sign anyone in.
CREATE TABLE sessions (
    token_hash  TEXT    PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  TEXT    NOT NULL,
    expires_at  TEXT    NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL,
    -- SHA-256 of the secret; the secret is shown once, when created.
    token_hash   TEXT    NOT NULL UNIQUE,
    -- The first characters of the secret, to tell tokens apart in lists.
    prefix       TEXT    NOT NULL,
    scope        TEXT    NOT NULL CHECK (scope IN ('read', 'write')),
    created_by   TEXT    NOT NULL,
    created_at   TEXT    NOT NULL,
    revoked_at   TEXT,
    last_used_at TEXT
);

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT    NOT NULL,
    actor   TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    subject TEXT    NOT NULL,
    detail  TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at ON audit_log (at);

-- An admin's acknowledgement of one warning on one step of a flow's draft,
-- with a note the marketers see on the step.
CREATE TABLE finding_acks (
    flow_id  INTEGER NOT NULL REFERENCES flows (id) ON DELETE CASCADE,
    step_id  TEXT    NOT NULL,
    code     TEXT    NOT NULL,
    note     TEXT    NOT NULL,
    acked_by TEXT    NOT NULL,
    acked_at TEXT    NOT NULL,
    PRIMARY KEY (flow_id, step_id, code)
);
