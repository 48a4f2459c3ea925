-- Bounces, complaints and replies (DESIGN §10): what came back about an
-- email, on its conversation record; the bounce and reply mailbox's log
-- (each message handled once); the webhook tokens already used. Times
-- shown to people are RFC 3339 text; times compared are unix milliseconds.

-- The first bounce, its kind (hard, soft; a hard one is never downgraded),
-- the enhanced status code (RFC 3463, `5.1.1`) and the remote server's
-- words (at most 1,000 characters).
ALTER TABLE conversations ADD COLUMN bounced_at TEXT;
ALTER TABLE conversations ADD COLUMN bounce_type TEXT;
ALTER TABLE conversations ADD COLUMN bounce_status TEXT;
ALTER TABLE conversations ADD COLUMN bounce_diagnostic TEXT;
-- The first feedback-loop complaint (the recipient marked it as spam).
ALTER TABLE conversations ADD COLUMN complained_at TEXT;
-- The first reply by a person, the first auto-reply, and the text of the
-- latest reply without the quoted message (at most 2,000 characters; an
-- auto-reply's only until a person answers).
ALTER TABLE conversations ADD COLUMN replied_at TEXT;
ALTER TABLE conversations ADD COLUMN auto_replied_at TEXT;
ALTER TABLE conversations ADD COLUMN reply_excerpt TEXT;
-- Providers that replace our Message-ID are matched by address.
CREATE INDEX conversations_address ON conversations (lower(address));

-- Every message the mailbox poller handled, once per mailbox, UIDVALIDITY
-- and UID (a mailbox recreated with a new UIDVALIDITY is read afresh; its
-- messages' events are still written once, by their Message-ID).
CREATE TABLE mailbox_messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    mailbox         TEXT    NOT NULL,   -- user@host:port/folder
    uid_validity    INTEGER NOT NULL,
    uid             INTEGER NOT NULL,
    message_id      TEXT,               -- the message's own Message-ID
    kind            TEXT    NOT NULL,   -- bounce, complaint, reply, auto_reply, unmatched, ignored
    conversation_id INTEGER REFERENCES conversations (id) ON DELETE SET NULL,
    note            TEXT    NOT NULL,   -- what was found, at most 500 characters
    handled_at      TEXT    NOT NULL,
    UNIQUE (mailbox, uid_validity, uid)
);
CREATE INDEX mailbox_messages_handled ON mailbox_messages (id DESC);

-- The poller's state: one process polls at a time (a lease), and the
-- settings page shows how the last poll went.
CREATE TABLE mailbox_state (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    lease_owner   TEXT,
    lease_until   INTEGER,
    last_poll_at  TEXT,
    last_error    TEXT,
    handled       INTEGER NOT NULL DEFAULT 0
);
INSERT INTO mailbox_state (id) VALUES (1);

-- Tokens of signed webhooks whose signature does not cover the body
-- (Mailgun's): a token is good for the body it came with only.
CREATE TABLE provider_hook_nonces (
    provider    TEXT    NOT NULL,
    nonce       TEXT    NOT NULL,
    body_sha256 TEXT    NOT NULL,
    seen_at     INTEGER NOT NULL,
    PRIMARY KEY (provider, nonce)
);
