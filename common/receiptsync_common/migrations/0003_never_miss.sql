-- ReceiptSync worker schema, version 3 (issue 12, "never miss a receipt"). Every statement may run
-- again without harm.

-- 1. The incremental cursor is kept per business AND mailbox. history_id/last_success_at is the
--    cursor incremental runs read Gmail history from; pending_history_id/pending_at is the newest
--    history id a covering run has read that is not yet old enough to trust (Gmail's search index
--    trails its history): it becomes the cursor once a later covering run starts at least the
--    overlap after it.
ALTER TABLE business_sync_state DROP CONSTRAINT IF EXISTS business_sync_state_pkey;
ALTER TABLE business_sync_state ADD PRIMARY KEY (business_id, mailbox);
ALTER TABLE business_sync_state ADD COLUMN IF NOT EXISTS pending_history_id numeric(30, 0);
ALTER TABLE business_sync_state ADD COLUMN IF NOT EXISTS pending_at timestamptz;

-- 2. Checkpoints belong to a window (resource, mailbox, mode, dates, query): a run capped by
--    maxMessages leaves them, and the next run of the same window skips what they list; they are
--    deleted when a run finishes the window. run_key says which run did each message (its cap).
ALTER TABLE sync_checkpoints ADD COLUMN IF NOT EXISTS window_key text;
UPDATE sync_checkpoints SET window_key = run_key WHERE window_key IS NULL;
ALTER TABLE sync_checkpoints ALTER COLUMN window_key SET NOT NULL;
ALTER TABLE sync_checkpoints ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE sync_checkpoints DROP CONSTRAINT IF EXISTS sync_checkpoints_pkey;
ALTER TABLE sync_checkpoints ADD PRIMARY KEY (window_key, gmail_message_id);
CREATE INDEX IF NOT EXISTS sync_checkpoints_run_key_idx ON sync_checkpoints (run_key);

-- 3. The attempt's durable outcome and its never-silent counters.
ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS mailbox text;
ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS window_key text;
ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS skipped jsonb NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS skipped_messages integer NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS quarantined_messages integer NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS capped boolean NOT NULL DEFAULT false;
ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS outcome_message text;
COMMENT ON COLUMN sync_runs.skipped IS
    'message id -> why it was not (fully) processed: unreadable, extraction_failed, attachment_too_large, attachment_missing, pdf_unreadable, ...';

-- 4. Messages whose extraction failed, per business; quarantined (never fetched again) after a few tries.
CREATE TABLE IF NOT EXISTS message_failures (
    business_id      text        NOT NULL,
    gmail_message_id text        NOT NULL,
    tries            integer     NOT NULL DEFAULT 1,
    last_error       text,
    last_job_id      text,
    first_failed_at  timestamptz NOT NULL DEFAULT now(),
    last_failed_at   timestamptz NOT NULL DEFAULT now(),
    quarantined_at   timestamptz,
    PRIMARY KEY (business_id, gmail_message_id)
);
