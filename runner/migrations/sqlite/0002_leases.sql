-- A running job is held under a lease: who holds it, the claim's token, and until when.
-- Rows left `running` by older releases have no lease and count as expired.
ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_token TEXT;
ALTER TABLE jobs ADD COLUMN lease_expires_at INTEGER;
CREATE INDEX IF NOT EXISTS jobs_leases ON jobs (status, lease_expires_at);
