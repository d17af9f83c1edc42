-- GET /api/transactions?limit=LIMIT[&cursor=ETX_CURSOR] with the bearer token in ETX_TOKEN.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local token = os.getenv("ETX_TOKEN") or error("ETX_TOKEN is not set")
local cursor = os.getenv("ETX_CURSOR")
local limit = os.getenv("ETX_LIMIT") or "20"
wrk.method = "GET"
wrk.path = "/api/transactions?limit=" .. limit
if cursor and cursor ~= "" then
  wrk.path = wrk.path .. "&cursor=" .. cursor
end
wrk.headers["Authorization"] = "Bearer " .. token
wrk.headers["Accept"] = "application/json"

done = common.done(os.getenv("ETX_LABEL") or "list")
