-- ReceiptSync schema, version 4 (issue 14, tenant isolation). Every statement may run again.
--
-- Workers no longer own the schema. Each worker attempt connects as a login role of its own, made
-- by the operator (receiptsync_operator.tenant_db) as a member of the NOLOGIN group role
-- receiptsync_worker and recorded in attempt_credentials with its business and an expiry. The group
-- may only read and write rows (no DDL), and row-level security shows and lets it change only the
-- rows of the business its login role was made for. The role that runs the migrations (the
-- operator's administrative URL) owns the tables and is not subject to these policies.

-- 1. Checkpoints belong to a business too, so row-level security can tell whose they are.
ALTER TABLE sync_checkpoints ADD COLUMN IF NOT EXISTS business_id text;
UPDATE sync_checkpoints c SET business_id = r.business_id FROM sync_runs r
 WHERE c.business_id IS NULL AND r.run_key = c.run_key;
DELETE FROM sync_checkpoints WHERE business_id IS NULL;  -- resume hints only: re-fetching is harmless
ALTER TABLE sync_checkpoints ALTER COLUMN business_id SET NOT NULL;

-- 2. Which login role works for which business, until when (written only by the operator).
CREATE TABLE IF NOT EXISTS attempt_credentials (
    role_name   text        PRIMARY KEY,
    job_id      text        NOT NULL UNIQUE,
    business_id text        NOT NULL,
    namespace   text        NOT NULL,
    secret_name text        NOT NULL,
    redis_user  text        NOT NULL,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON attempt_credentials, schema_migrations FROM PUBLIC;

-- 3. The group role of every worker login role.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'receiptsync_worker') THEN
        CREATE ROLE receiptsync_worker NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    END IF;
END
$$;

-- 4. The business of the session's login role (NULL for any other role, and once it expired).
--    SECURITY DEFINER: workers read attempt_credentials only through it; session_user, because a
--    worker may SET ROLE to its group but never change the role it logged in as.
DO $$
BEGIN
    EXECUTE format(
        'CREATE OR REPLACE FUNCTION %1$I.receiptsync_business() RETURNS text'
        ' LANGUAGE sql STABLE SECURITY DEFINER SET search_path = %1$I, pg_temp AS'
        ' $f$ SELECT business_id FROM %1$I.attempt_credentials'
        '     WHERE role_name = session_user AND expires_at > now() $f$', current_schema());
    EXECUTE format('REVOKE ALL ON FUNCTION %I.receiptsync_business() FROM PUBLIC', current_schema());
    EXECUTE format('GRANT EXECUTE ON FUNCTION %I.receiptsync_business() TO receiptsync_worker', current_schema());
    -- No DDL for anyone but the owner: no new tables in the schema, no new schemas in the database.
    EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', current_schema());
    EXECUTE format('REVOKE CREATE ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO receiptsync_worker', current_schema());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO receiptsync_worker', current_database());
END
$$;

-- 5. What a worker does, and nothing more: rows only (its temporary COPY tables are its session's).
REVOKE ALL ON receipts, receipt_attachments, sync_runs, sync_checkpoints, business_sync_state, message_failures
    FROM receiptsync_worker;
GRANT SELECT, INSERT, UPDATE ON receipts, sync_runs, business_sync_state, message_failures TO receiptsync_worker;
GRANT SELECT, INSERT ON receipt_attachments TO receiptsync_worker;
GRANT SELECT, INSERT, DELETE ON sync_checkpoints TO receiptsync_worker;
GRANT USAGE ON SEQUENCE receipts_id_seq, receipt_attachments_id_seq, sync_runs_id_seq TO receiptsync_worker;

-- 6. Row-level security: a worker sees and changes only its business's rows (the owner is exempt).
DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['receipts', 'receipt_attachments', 'sync_runs', 'sync_checkpoints',
                                'business_sync_state', 'message_failures'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', name);
        EXECUTE format('DROP POLICY IF EXISTS receiptsync_own_business ON %I', name);
        EXECUTE format('CREATE POLICY receiptsync_own_business ON %I TO receiptsync_worker'
                       ' USING (business_id = (SELECT receiptsync_business()))'
                       ' WITH CHECK (business_id = (SELECT receiptsync_business()))', name);
    END LOOP;
END
$$;
