-- Each user's file workspace: folders and files in one tree. A file's bytes live in the object
-- store under `object_key`; the row is what makes them visible.
CREATE TABLE files (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    parent_id TEXT REFERENCES files (id),
    is_folder BOOLEAN NOT NULL,
    name TEXT NOT NULL,
    size BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    object_key TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- One name per folder ('' stands for the root, which has no row).
CREATE UNIQUE INDEX files_name_idx ON files (owner_id, COALESCE(parent_id, ''), name);
CREATE INDEX files_parent_idx ON files (parent_id);
-- Bytes stored per user, kept with every insert and delete so the quota check is one
-- conditional update.
CREATE TABLE file_usage (
    owner_id TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    used BIGINT NOT NULL
)
