-- Jobs, with the lease a runner holds while it converts one.
CREATE TABLE jobs (
    seq              BIGSERIAL PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    owner            TEXT NOT NULL,
    status           TEXT NOT NULL
                     CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    progress         INTEGER NOT NULL DEFAULT 0,
    filename         TEXT NOT NULL,
    source_filename  TEXT NOT NULL,
    size_bytes       BIGINT NOT NULL,
    output_bytes     BIGINT,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    completed_at     BIGINT,
    error            TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    not_before       BIGINT NOT NULL DEFAULT 0,
    expired          BOOLEAN NOT NULL DEFAULT FALSE,
    lease_owner      TEXT,
    lease_token      TEXT,
    lease_expires_at BIGINT
);
CREATE INDEX jobs_by_owner ON jobs (owner, seq);
CREATE INDEX jobs_runnable ON jobs (status, not_before, seq);
CREATE INDEX jobs_finished ON jobs (expired, completed_at);
CREATE INDEX jobs_leases ON jobs (status, lease_expires_at);
