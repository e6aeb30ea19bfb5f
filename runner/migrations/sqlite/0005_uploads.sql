-- Resumable (tus) uploads: what a client has sent so far, until the last byte turns the
-- upload into its job (`job_id`, chosen at creation) or it expires.
CREATE TABLE uploads (
    id              TEXT PRIMARY KEY,
    owner           TEXT NOT NULL,
    source_filename TEXT NOT NULL,
    length          INTEGER NOT NULL,
    received        INTEGER NOT NULL DEFAULT 0,
    job_id          TEXT NOT NULL UNIQUE,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    -- Where the job's webhook goes (checked at creation), passed on to the job.
    callback_url    TEXT,
    completed_at    INTEGER,
    -- The PATCH writing now, and until when its hold lasts without a renewal.
    writer          TEXT,
    writer_until    INTEGER
);
CREATE INDEX uploads_by_owner ON uploads (owner, completed_at);
CREATE INDEX uploads_by_expiry ON uploads (expires_at);
