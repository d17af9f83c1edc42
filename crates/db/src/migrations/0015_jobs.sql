-- Processing jobs. A worker claims a queued job by setting `worker` and a lease; it renews
-- the lease while it runs, so a job whose worker died is claimable again once the lease ends.
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    -- The file or folder it was started on, and its name then (the entry may be gone later).
    input_id TEXT NOT NULL,
    input_name TEXT NOT NULL,
    status TEXT NOT NULL,
    -- Per mille of the work done.
    progress INTEGER NOT NULL,
    message TEXT NOT NULL,
    cancel_requested BOOLEAN NOT NULL,
    attempts INTEGER NOT NULL,
    worker TEXT,
    lease_until BIGINT,
    -- The workspace folder holding what it wrote.
    output_id TEXT,
    -- The failed or cancelled job this one runs again.
    retry_of TEXT,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX jobs_owner_idx ON jobs (owner_id, created_at);
CREATE INDEX jobs_queue_idx ON jobs (status, created_at);
-- What each step of a job did: its input, counts and output files (detail, JSON), its error.
CREATE TABLE job_steps (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    name TEXT NOT NULL,
    input TEXT NOT NULL,
    status TEXT NOT NULL,
    detail TEXT NOT NULL,
    error TEXT,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    PRIMARY KEY (job_id, seq)
)
