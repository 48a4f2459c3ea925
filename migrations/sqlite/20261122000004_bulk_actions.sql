-- Bulk participant actions: suppress remembers the status it replaced, and
-- every bulk run is audited.
ALTER TABLE participants ADD COLUMN prior_status TEXT;
CREATE INDEX participants_status ON participants (status);

CREATE TABLE bulk_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    action      TEXT    NOT NULL,
    criteria    TEXT    NOT NULL,   -- JSON, as given
    disposition TEXT,
    count       INTEGER NOT NULL,
    run_by      TEXT    NOT NULL,
    run_at      TEXT    NOT NULL
);
