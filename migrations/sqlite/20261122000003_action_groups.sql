-- Action groups: reusable bundles of steps (a waymark.flow/v1 document with
-- its own start), run inline from a flow step or a call disposition. They
-- are not versioned: a change applies to the next run.
CREATE TABLE action_groups (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL UNIQUE COLLATE NOCASE CHECK (length(trim(name)) > 0),
    document   TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
