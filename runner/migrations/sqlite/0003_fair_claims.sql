-- Fair claims and per-owner quotas look at one owner's live (not expired) jobs: how
-- many run, when the last one started, what they hold. Expired rows are history and
-- never shrink, so the indexes leave them out.
CREATE INDEX IF NOT EXISTS jobs_owner_live ON jobs (owner, status) WHERE expired = FALSE;
CREATE INDEX IF NOT EXISTS jobs_owner_started ON jobs (owner, started_at) WHERE expired = FALSE;
