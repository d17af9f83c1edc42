-- What a job was asked to do besides its input (JSON): a tenant's name, a version, page sizes.
-- Jobs of kinds without an input file have an empty input_id.
ALTER TABLE jobs ADD COLUMN params TEXT NOT NULL DEFAULT '{}'
