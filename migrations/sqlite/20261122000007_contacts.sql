-- Contacts at scale: streamed CSV imports with a per-row error report,
-- bulk runs as background jobs with progress and undo, and signed data
-- files. (0005 and 0006 belong to other branches.)

-- Imports match existing contacts by mobile as well as by email.
CREATE INDEX contacts_mobile ON contacts (mobile) WHERE mobile IS NOT NULL;
-- A deleted contact keeps its row (its calls, messages and timeline point
-- at it) but none of its personal data.
ALTER TABLE contacts ADD COLUMN deleted_at TEXT;

CREATE TABLE contact_imports (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    file_name   TEXT,
    options     TEXT    NOT NULL,             -- JSON: mapping, dedupe, match_on, list
    status      TEXT    NOT NULL,             -- running, done, failed
    bytes_total INTEGER NOT NULL,
    bytes_done  INTEGER NOT NULL DEFAULT 0,
    rows_done   INTEGER NOT NULL DEFAULT 0,   -- data rows read and settled (committed)
    rows_total  INTEGER,                      -- known once the file is read to the end
    created     INTEGER NOT NULL DEFAULT 0,
    updated     INTEGER NOT NULL DEFAULT 0,
    skipped     INTEGER NOT NULL DEFAULT 0,   -- existing contacts left alone (dedupe: skip)
    failed      INTEGER NOT NULL DEFAULT 0,   -- rows refused, listed in import_errors
    error       TEXT,                         -- why the whole import stopped, if it did
    started_by  TEXT    NOT NULL,
    started_at  TEXT    NOT NULL,
    finished_at TEXT
);

-- The rows an import refused, by line number of the file (the header is line 1).
CREATE TABLE import_errors (
    import_id INTEGER NOT NULL REFERENCES contact_imports (id) ON DELETE CASCADE,
    line      INTEGER NOT NULL,
    reason    TEXT    NOT NULL,
    PRIMARY KEY (import_id, line)
);

-- Participants reserved for one agent, and scheduled callbacks.
ALTER TABLE participants ADD COLUMN reserved_for TEXT;
ALTER TABLE participants ADD COLUMN callback_at INTEGER;   -- unix ms
ALTER TABLE participants ADD COLUMN callback_owner TEXT;
CREATE INDEX participants_callbacks ON participants (callback_at) WHERE callback_at IS NOT NULL;
-- The bulk run (move / copy to flow) that created a participant.
ALTER TABLE participants ADD COLUMN created_by_run INTEGER;
CREATE INDEX participants_created_by_run ON participants (created_by_run) WHERE created_by_run IS NOT NULL;

-- Bulk runs are background jobs: the participants they apply to are
-- snapshotted first (bulk_run_items, with what each had before, so the
-- reversible ones can be undone), then changed in chunks with progress.
ALTER TABLE bulk_runs ADD COLUMN params TEXT;                          -- JSON: target flow, callback time, agent, recipients
ALTER TABLE bulk_runs ADD COLUMN status TEXT NOT NULL DEFAULT 'done';  -- running, done, failed, undone
ALTER TABLE bulk_runs ADD COLUMN total INTEGER NOT NULL DEFAULT 0;     -- participants snapshotted
ALTER TABLE bulk_runs ADD COLUMN done INTEGER NOT NULL DEFAULT 0;      -- of them, processed
ALTER TABLE bulk_runs ADD COLUMN cursor INTEGER NOT NULL DEFAULT 0;    -- last participant id processed
ALTER TABLE bulk_runs ADD COLUMN message TEXT;                         -- the outcome in words
ALTER TABLE bulk_runs ADD COLUMN finished_at TEXT;
ALTER TABLE bulk_runs ADD COLUMN undone_by TEXT;
ALTER TABLE bulk_runs ADD COLUMN undone_at TEXT;

CREATE TABLE bulk_run_items (
    run_id            INTEGER NOT NULL REFERENCES bulk_runs (id) ON DELETE CASCADE,
    participant_id    INTEGER NOT NULL,
    prior_status      TEXT    NOT NULL,
    prior_reserved    TEXT,
    prior_callback_at INTEGER,
    prior_callback_by TEXT,
    changed           INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, participant_id)
) WITHOUT ROWID;

-- A data file (ZIP of CSV) made by the "email data file" action. The
-- download link is signed and expires; sending the email is the mailer's
-- job: until it sends, email_status says so.
CREATE TABLE data_files (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id       INTEGER REFERENCES bulk_runs (id),
    path         TEXT    NOT NULL,
    rows         INTEGER NOT NULL,
    recipients   TEXT    NOT NULL,   -- JSON array of addresses
    link         TEXT    NOT NULL,   -- path and query, signed
    expires_at   TEXT    NOT NULL,
    email_status TEXT    NOT NULL DEFAULT 'queued',
    created_by   TEXT    NOT NULL,
    created_at   TEXT    NOT NULL
);
