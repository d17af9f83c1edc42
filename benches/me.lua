-- GET /api/auth/me with a bearer token taken from ETX_TOKEN.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local token = os.getenv("ETX_TOKEN") or error("ETX_TOKEN is not set")
wrk.method = "GET"
wrk.path = "/api/auth/me"
wrk.headers["Authorization"] = "Bearer " .. token
wrk.headers["Accept"] = "application/json"

done = common.done(os.getenv("ETX_LABEL") or "me")
