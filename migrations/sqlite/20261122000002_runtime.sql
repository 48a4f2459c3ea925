-- The runtime: contacts, lists, participants (enrollments), their timeline,
-- and the outbox of effects. Times the scheduler compares are unix
-- milliseconds (INTEGER); times people read are RFC 3339 text.

-- A published flow whose start step admits the members of a list.
ALTER TABLE flows ADD COLUMN entry_list TEXT;

CREATE TABLE contacts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    email      TEXT,
    mobile     TEXT,
    timezone   TEXT,
    owner      TEXT,
    fields     TEXT    NOT NULL DEFAULT '{}',   -- JSON object
    opted_out  TEXT    NOT NULL DEFAULT '[]',   -- JSON array: email, sms, call, all
    blocked    INTEGER NOT NULL DEFAULT 0,
    created_at TEXT    NOT NULL,
    updated_at TEXT    NOT NULL
);
CREATE UNIQUE INDEX contacts_email ON contacts (lower(email)) WHERE email IS NOT NULL;

CREATE TABLE lists (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE
);

CREATE TABLE list_members (
    list_id    INTEGER NOT NULL REFERENCES lists (id) ON DELETE CASCADE,
    contact_id INTEGER NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    added_at   TEXT    NOT NULL,
    PRIMARY KEY (list_id, contact_id)
);
CREATE INDEX list_members_contact ON list_members (contact_id);

CREATE TABLE participants (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    flow_id      INTEGER NOT NULL,
    version      INTEGER NOT NULL,
    contact_id   INTEGER NOT NULL REFERENCES contacts (id),
    status       TEXT    NOT NULL,
    step         TEXT,
    -- The engine's whole participant state (phase, draws, seed...), JSON.
    state        TEXT    NOT NULL,
    -- When time alone moves it next; NULL while it waits for a person or an effect.
    next_run_at  INTEGER,
    pass_count   INTEGER NOT NULL DEFAULT 0,
    owner        TEXT,
    -- When it enters the flow (unix ms): enrollment time, or a later slow-drip slot.
    starts_at    INTEGER NOT NULL,
    -- A worker's claim: a claim whose lease has run out may be taken over.
    lease_owner  TEXT,
    lease_until  INTEGER,
    -- Bumped on every write: a worker commits only over the revision it read.
    revision     INTEGER NOT NULL DEFAULT 0,
    enrolled_at  TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL,
    FOREIGN KEY (flow_id, version) REFERENCES flow_versions (flow_id, number)
);
CREATE INDEX participants_due ON participants (next_run_at) WHERE next_run_at IS NOT NULL;
CREATE INDEX participants_flow ON participants (flow_id, status);
CREATE INDEX participants_contact ON participants (contact_id, flow_id);
CREATE INDEX participants_starts ON participants (flow_id, starts_at);

-- The timeline: one row per step a participant reached (per visit).
CREATE TABLE participant_actions (
    participant_id INTEGER NOT NULL REFERENCES participants (id) ON DELETE CASCADE,
    visit          INTEGER NOT NULL,
    step           TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    due_at         TEXT    NOT NULL,
    done_at        TEXT,
    outcome        TEXT    NOT NULL,
    reason         TEXT,
    manual         INTEGER NOT NULL DEFAULT 0,
    owner          TEXT,
    subject        TEXT,
    why            TEXT,
    PRIMARY KEY (participant_id, visit)
);
CREATE INDEX participant_actions_inbox ON participant_actions (owner, outcome) WHERE manual = 1;

-- Effects to carry out, once each: the idempotency key is
-- participant:step:visit:attempt, unique, so a replayed transition cannot
-- enqueue twice.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    participant_id  INTEGER NOT NULL REFERENCES participants (id) ON DELETE CASCADE,
    step            TEXT    NOT NULL,
    visit           INTEGER NOT NULL,
    idempotency_key TEXT    NOT NULL UNIQUE,
    kind            TEXT    NOT NULL,
    effect          TEXT    NOT NULL,   -- JSON
    awaited         INTEGER NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'queued',   -- queued, sent, failed
    tries           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    last_error      TEXT,
    created_at      TEXT    NOT NULL,
    done_at         TEXT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status = 'queued';
