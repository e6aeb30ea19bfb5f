-- A job's revision counts the changes of its status or progress a client can see; the
-- ids of its server-sent events, which must only ever grow.
ALTER TABLE jobs ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
