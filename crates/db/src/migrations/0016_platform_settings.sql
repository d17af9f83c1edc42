-- Each user's connection to the external ETX/CTX platform. The password and the data source
-- key are one sealed value (`secrets`, see etx-core processing::platform::settings); the rest
-- is shown to the user and kept in the clear.
CREATE TABLE platform_settings (
    user_id TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    http_uri TEXT NOT NULL,
    ws_uri TEXT NOT NULL,
    api_version TEXT NOT NULL,
    email TEXT NOT NULL,
    secrets TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
)
