-- The agent's workspace (DESIGN §11): messages and calls an agent sends
-- from a task, saved templates, the agent's own phone for click-to-call,
-- and a flow-level default owner for its manual steps.

-- The agent's own phone (E.164): click-to-call rings it first.
ALTER TABLE users ADD COLUMN phone TEXT;

-- Who sent it from the workspace (NULL: a flow sent it), whether it came
-- in (an SMS reply) or went out, an SMS's text (at most 1,600 characters),
-- when a call was answered, and the agent's notes after it (at most 2,000).
ALTER TABLE conversations ADD COLUMN agent TEXT;
ALTER TABLE conversations ADD COLUMN direction TEXT NOT NULL DEFAULT 'out';
ALTER TABLE conversations ADD COLUMN body TEXT;
ALTER TABLE conversations ADD COLUMN answered_at TEXT;
ALTER TABLE conversations ADD COLUMN notes TEXT;

-- Whose manual steps of this flow are when the step names nobody.
ALTER TABLE flows ADD COLUMN task_owner TEXT;

-- Saved subjects and bodies agents pick from (email: subject and HTML
-- body; sms: the text). Names at most 200 characters, subjects 998,
-- bodies 100 KB.
CREATE TABLE message_templates (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL,
    channel    TEXT    NOT NULL CHECK (channel IN ('email', 'sms')),
    subject    TEXT,
    body       TEXT    NOT NULL,
    updated_by TEXT    NOT NULL,
    updated_at TEXT    NOT NULL,
    UNIQUE (channel, name)
);
