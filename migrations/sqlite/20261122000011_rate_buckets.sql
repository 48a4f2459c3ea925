-- Rate limits shared by every process on the database (auth::limit): a
-- token bucket per limit and subject (an email, an address, a user),
-- written compare-and-set on its version. Times are milliseconds.
CREATE TABLE rate_buckets (
    name    TEXT NOT NULL,
    subject TEXT NOT NULL,
    tokens  REAL NOT NULL,
    at      INTEGER NOT NULL,   -- when tokens was counted
    full_at INTEGER NOT NULL,   -- when the bucket is full again, and can go
    version INTEGER NOT NULL,
    PRIMARY KEY (name, subject)
);
CREATE INDEX rate_buckets_full ON rate_buckets (full_at);
