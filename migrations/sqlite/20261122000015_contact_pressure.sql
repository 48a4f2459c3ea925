-- Contact pressure (FLOW_FORMAT "Contact pressure"): the messages sent to
-- each contact by any flow, counted by the installation's caps without
-- scanning the outbox, and the policy itself.
CREATE TABLE contact_sends (
    contact_id INTEGER NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    channel    TEXT    NOT NULL,   -- email, sms, call
    at         INTEGER NOT NULL    -- unix ms
);
CREATE INDEX contact_sends_contact ON contact_sends (contact_id, at);
-- Bumped with every write of new sends: writers compare and set it, so
-- that two workers cannot both take a cap's last slot.
ALTER TABLE contacts ADD COLUMN sends_version INTEGER NOT NULL DEFAULT 0;

-- Installation-wide settings as JSON documents, by name (`pressure`).
CREATE TABLE installation_settings (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL
);
