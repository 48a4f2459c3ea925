-- Contact events (FLOW_FORMAT "Engagement"): what a contact did, written
-- once, then delivered to the contact's active participants by a worker.
-- Times the worker compares are unix milliseconds (INTEGER).
CREATE TABLE contact_events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    contact_id     INTEGER NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    -- Known for tracked opens and clicks (the message's participant).
    participant_id INTEGER,
    kind           TEXT    NOT NULL,   -- email_opened, link_clicked, replied, bounced, complained, unsubscribed, custom
    name           TEXT,               -- a custom event's name
    step           TEXT,               -- the message step it is about
    body           TEXT    NOT NULL,   -- the event as JSON (properties included)
    machine        INTEGER NOT NULL DEFAULT 0,   -- a privacy proxy's open, a scanner's click
    auto           INTEGER NOT NULL DEFAULT 0,   -- an auto-reply
    source         TEXT    NOT NULL,   -- api, pixel, click, unsubscribe, reply, bounce, sms
    happened_at    INTEGER NOT NULL,
    received_at    INTEGER NOT NULL,
    -- The caller's id: an event sent twice is written once.
    external_id    TEXT,
    -- NULL until every active participant of the contact has had it.
    delivered_at   INTEGER,
    -- A worker delivering it (PostgreSQL: several at once).
    lease_until    INTEGER
);
CREATE UNIQUE INDEX contact_events_external ON contact_events (external_id) WHERE external_id IS NOT NULL;
CREATE INDEX contact_events_contact ON contact_events (contact_id, happened_at);
CREATE INDEX contact_events_pending ON contact_events (id) WHERE delivered_at IS NULL;

-- What each event did to each participant it reached (the timeline's
-- "met wait w2", "goal reached", "ignored: not waiting"); also makes a
-- second delivery of the same event to the same participant a no-op.
CREATE TABLE participant_events (
    participant_id INTEGER NOT NULL REFERENCES participants (id) ON DELETE CASCADE,
    event_id       INTEGER NOT NULL REFERENCES contact_events (id) ON DELETE CASCADE,
    effect         TEXT    NOT NULL,   -- met, goal, exited, recorded, ignored, enrolled
    step           TEXT,               -- where the participant was
    at             TEXT    NOT NULL,
    PRIMARY KEY (participant_id, event_id)
);
CREATE INDEX participant_events_event ON participant_events (event_id);

-- A published flow whose start step enrolls on a custom event (by name).
ALTER TABLE flows ADD COLUMN entry_event TEXT;
CREATE INDEX flows_entry_event ON flows (entry_event) WHERE entry_event IS NOT NULL;
