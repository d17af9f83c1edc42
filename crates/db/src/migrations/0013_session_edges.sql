-- A rotated refresh token remembers its successor (sealed with a key derived from the server
-- secret) for a short grace period, so two tabs refreshing at once both get the new pair.
ALTER TABLE refresh_tokens ADD COLUMN successor_sealed TEXT;
-- The audit chain is keyed (HMAC) from `keyed_from` on; `key_check` is a MAC of that number, so
-- moving the boundary to pass keyed records off as older unkeyed ones is itself detected.
ALTER TABLE audit_head ADD COLUMN keyed_from BIGINT;
ALTER TABLE audit_head ADD COLUMN key_check TEXT
