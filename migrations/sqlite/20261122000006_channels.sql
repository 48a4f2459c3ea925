-- Channels: integration settings (one row per channel; the secret sits in
-- its own column and is never sent to the browser), one conversation record
-- per message sent to a person, and a record of each outbound HTTP call.

CREATE TABLE integration_settings (
    channel    TEXT PRIMARY KEY,   -- smtp, sms, http
    settings   TEXT NOT NULL,      -- JSON, without the secret
    secret     TEXT,               -- password or token
    updated_at TEXT NOT NULL
);

CREATE TABLE conversations (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The outbox key: every try of one effect is one conversation record.
    idempotency_key TEXT    NOT NULL UNIQUE,
    participant_id  INTEGER REFERENCES participants (id) ON DELETE SET NULL,
    contact_id      INTEGER REFERENCES contacts (id) ON DELETE SET NULL,
    channel         TEXT    NOT NULL,   -- email, sms, notify_email, notify_sms
    address         TEXT    NOT NULL,   -- whom it went to
    sender          TEXT,               -- the From address or number
    subject         TEXT,
    status          TEXT    NOT NULL,   -- queued, sent, failed; SMS also delivered, undelivered
    provider_id     TEXT,               -- Message-ID, or the SMS provider's message sid
    error           TEXT,
    created_at      TEXT    NOT NULL,
    sent_at         TEXT,
    updated_at      TEXT    NOT NULL
);
CREATE INDEX conversations_participant ON conversations (participant_id);
CREATE INDEX conversations_contact ON conversations (contact_id);
CREATE INDEX conversations_provider ON conversations (provider_id) WHERE provider_id IS NOT NULL;

-- Webhooks and data appends: what was called and what came back.
CREATE TABLE http_calls (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT    NOT NULL,
    participant_id  INTEGER REFERENCES participants (id) ON DELETE SET NULL,
    kind            TEXT    NOT NULL,   -- webhook, data_append
    method          TEXT    NOT NULL,
    url             TEXT    NOT NULL,
    status          INTEGER,            -- HTTP status; NULL when nothing came back
    excerpt         TEXT,               -- the start of the response body, or why it failed
    at              TEXT    NOT NULL
);
CREATE INDEX http_calls_participant ON http_calls (participant_id);
