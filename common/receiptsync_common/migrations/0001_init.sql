-- ReceiptSync worker schema, version 1 (CONTRACT section 3).

CREATE TABLE receipts (
    id               bigserial PRIMARY KEY,
    business_id      text        NOT NULL,
    gmail_message_id text        NOT NULL,
    gmail_thread_id  text,
    subject          text        NOT NULL DEFAULT '',
    sender           text        NOT NULL DEFAULT '',
    sender_email     text        NOT NULL DEFAULT '',
    received_at      timestamptz NOT NULL,
    amount           numeric(14, 2),
    currency         text,
    amount_source    text,       -- subject | body | pdf
    attachment_count integer     NOT NULL DEFAULT 0,
    first_job_id     text        NOT NULL,  -- the attempt that saved it first
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT receipts_business_message_key UNIQUE (business_id, gmail_message_id)
);
CREATE INDEX receipts_business_received_idx ON receipts (business_id, received_at DESC);

CREATE TABLE receipt_attachments (
    id               bigserial PRIMARY KEY,
    business_id      text    NOT NULL,
    gmail_message_id text    NOT NULL,
    part_id          text    NOT NULL,
    filename         text    NOT NULL,
    mime_type        text    NOT NULL,
    size_bytes       integer NOT NULL,
    sha256           text    NOT NULL,
    content          bytea   NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT receipt_attachments_part_key UNIQUE (business_id, gmail_message_id, part_id),
    CONSTRAINT receipt_attachments_receipt_fk FOREIGN KEY (business_id, gmail_message_id)
        REFERENCES receipts (business_id, gmail_message_id) ON DELETE CASCADE
);

CREATE TABLE sync_runs (
    id               bigserial PRIMARY KEY,
    job_id           text        NOT NULL UNIQUE,
    run_key          text        NOT NULL,  -- namespace/name/uid/run: the attempts of one run share it
    business_id      text        NOT NULL,
    namespace        text        NOT NULL,
    name             text        NOT NULL,
    run_id           integer     NOT NULL,
    attempt          integer     NOT NULL,
    mode             text        NOT NULL,
    date_from        date,
    date_to          date,
    used_history     boolean     NOT NULL DEFAULT false,
    started_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    status           text        NOT NULL,  -- Started | Finished | Failed
    reason           text,
    messages_scanned integer     NOT NULL DEFAULT 0,
    saved_receipts   integer     NOT NULL DEFAULT 0,
    error            text
);
CREATE INDEX sync_runs_business_idx ON sync_runs (business_id, started_at DESC);
CREATE INDEX sync_runs_run_key_idx ON sync_runs (run_key);

-- Resume points: message ids a run has finished, written in the same transaction as their receipts,
-- so a retried attempt of the run skips exactly what is committed. Cleared when the run succeeds.
CREATE TABLE sync_checkpoints (
    run_key          text NOT NULL,
    gmail_message_id text NOT NULL,
    PRIMARY KEY (run_key, gmail_message_id)
);

CREATE TABLE business_sync_state (
    business_id     text PRIMARY KEY,
    mailbox         text        NOT NULL,
    history_id      numeric(30, 0),
    last_success_at timestamptz,
    last_job_id     text,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
