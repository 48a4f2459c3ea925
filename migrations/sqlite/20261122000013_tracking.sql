-- The engagement loop's own records (DESIGN §10): what a tracked email's
-- pixel and links heard, the links each message carried (a click redirects
-- only to one of them), and every consent change with when and by what.
-- Times shown to people are RFC 3339 text; times compared are unix
-- milliseconds (INTEGER).

-- The message step a conversation came from (opens and clicks name it).
ALTER TABLE conversations ADD COLUMN step TEXT;
-- Whether the message went out with an open pixel and tracked links.
ALTER TABLE conversations ADD COLUMN tracked INTEGER NOT NULL DEFAULT 0;
-- The first open by a person, and how many opens by people and by
-- mail-privacy proxies (machine) there were.
ALTER TABLE conversations ADD COLUMN opened_at TEXT;
ALTER TABLE conversations ADD COLUMN open_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN machine_open_count INTEGER NOT NULL DEFAULT 0;
-- The first click by a person, and the clicks by people and by link scanners.
ALTER TABLE conversations ADD COLUMN clicked_at TEXT;
ALTER TABLE conversations ADD COLUMN click_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN machine_click_count INTEGER NOT NULL DEFAULT 0;
-- When the provider reported it delivered (an SMS delivery report).
ALTER TABLE conversations ADD COLUMN delivered_at TEXT;
-- When its recipient unsubscribed through it (List-Unsubscribe, its link).
ALTER TABLE conversations ADD COLUMN unsubscribed_at TEXT;

-- Each tracked link of a message, by its place among them: the click
-- token names the place, never the URL, so nothing but these is a target.
CREATE TABLE conversation_links (
    conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    position        INTEGER NOT NULL,
    url             TEXT    NOT NULL,
    clicks          INTEGER NOT NULL DEFAULT 0,   -- by people
    machine_clicks  INTEGER NOT NULL DEFAULT 0,   -- by link scanners
    first_clicked_at TEXT,                        -- the first click by a person
    last_clicked_ms INTEGER,                      -- the latest click of any kind
    PRIMARY KEY (conversation_id, position)
);

-- Consent changes on a contact: the channel (email, sms, call, all),
-- whether it was turned off (1) or on again (0), when, and through what
-- (one_click, preference_page, mailto, sms_keyword), with the message it
-- came through when known.
CREATE TABLE consent_changes (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    contact_id      INTEGER NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    channel         TEXT    NOT NULL,
    opted_out       INTEGER NOT NULL,
    source          TEXT    NOT NULL,
    detail          TEXT,
    conversation_id INTEGER REFERENCES conversations (id) ON DELETE SET NULL,
    at              TEXT    NOT NULL,
    at_ms           INTEGER NOT NULL
);
CREATE INDEX consent_changes_contact ON consent_changes (contact_id, at_ms);
