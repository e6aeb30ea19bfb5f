-- The job table as the first SQLite release created it.
CREATE TABLE IF NOT EXISTS jobs (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    owner           TEXT NOT NULL,
    status          TEXT NOT NULL
                    CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    progress        INTEGER NOT NULL DEFAULT 0,
    filename        TEXT NOT NULL,
    source_filename TEXT NOT NULL,
    size_bytes      INTEGER NOT NULL,
    output_bytes    INTEGER,
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    completed_at    INTEGER,
    error           TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    not_before      INTEGER NOT NULL DEFAULT 0,
    expired         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, seq);
CREATE INDEX IF NOT EXISTS jobs_runnable ON jobs (status, not_before, seq);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (expired, completed_at);
