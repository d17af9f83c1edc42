-- POST /api/auth/login with correct credentials from ETX_LOGIN / ETX_PASSWORD.
-- The values are plain ASCII chosen by run.sh, so no JSON escaping is needed.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local login = os.getenv("ETX_LOGIN") or error("ETX_LOGIN is not set")
local password = os.getenv("ETX_PASSWORD") or error("ETX_PASSWORD is not set")
wrk.method = "POST"
wrk.path = "/api/auth/login"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"
wrk.body = string.format('{"login":"%s","password":"%s"}', login, password)

done = common.done(os.getenv("ETX_LABEL") or "login")
