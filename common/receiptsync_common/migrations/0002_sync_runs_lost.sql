-- ReceiptSync worker schema, version 2: sync_runs.status gains "Lost".
-- When an attempt starts, earlier attempts of the same run (same run_key) still 'Started' are closed
-- as 'Lost' with reason 'WorkerLost' in the same transaction (their worker was killed before it could
-- close its row). The column is free text, so only its documentation changes.
COMMENT ON COLUMN sync_runs.status IS
    'Started | Finished | Failed | Lost (a later attempt of the run started while this one was still Started; reason WorkerLost)';
