-- Webhooks. A job may name a callback URL; when it becomes completed or failed, the
-- trigger records a delivery in the same transaction (an outbox), whatever made the
-- change: a worker on any runner, the reaper, or a retried job finishing again.
ALTER TABLE jobs ADD COLUMN callback_url TEXT;

CREATE TABLE webhook_deliveries (
    seq             BIGSERIAL PRIMARY KEY,
    -- `dlv_` and 32 hex digits: the Spinmesh-Delivery header, the same on every attempt.
    id              TEXT NOT NULL UNIQUE,
    job_id          TEXT NOT NULL,
    owner           TEXT NOT NULL,
    callback_url    TEXT NOT NULL,
    event           TEXT NOT NULL CHECK (event IN ('job.completed', 'job.failed')),
    state           TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'abandoned')),
    -- The body, fixed by the first attempt so that every attempt sends the same.
    payload         TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- When the next attempt is due; while one is under way, when its claim expires.
    next_attempt_at BIGINT NOT NULL,
    claim_token     TEXT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    finished_at     BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE state = 'pending';
-- Settled deliveries are kept as long as finished jobs' files (--retention).
CREATE INDEX webhook_deliveries_settled ON webhook_deliveries (finished_at)
    WHERE state <> 'pending';

-- gen_random_uuid() is built in from PostgreSQL 13 on.
CREATE FUNCTION jobs_webhook_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (id, job_id, owner, callback_url, event, created_at,
                                    next_attempt_at)
    VALUES ('dlv_' || replace(gen_random_uuid()::text, '-', ''), NEW.id, NEW.owner,
            NEW.callback_url, 'job.' || NEW.status, COALESCE(NEW.completed_at, 0),
            COALESCE(NEW.completed_at, 0));
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_webhook_outbox
AFTER UPDATE OF status ON jobs
FOR EACH ROW
WHEN (NEW.callback_url IS NOT NULL AND NEW.status IN ('completed', 'failed')
      AND OLD.status IS DISTINCT FROM NEW.status)
EXECUTE FUNCTION jobs_webhook_outbox();
