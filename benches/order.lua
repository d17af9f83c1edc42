-- POST /api/orders: market buys of ETX_ORDER_AMOUNT BTC (default 0.0001) for USD by random users
-- read from ETX_USERS (lines "token username"), each with a fresh Idempotency-Key.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local users_file = os.getenv("ETX_USERS") or error("ETX_USERS is not set")
local run = os.getenv("ETX_LABEL") or "order"
local amount = os.getenv("ETX_ORDER_AMOUNT") or "0.0001"

local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
  table.insert(threads, thread)
end

local tokens, n, seq

function init(args)
  tokens = {}
  for line in io.lines(users_file) do
    local t = line:match("^(%S+)%s+%S+$")
    if t then table.insert(tokens, t) end
  end
  n = #tokens
  if n < 1 then error("no users in " .. users_file) end
  math.randomseed(os.time() * 1000 + tid)
  seq = 0
end

function request()
  seq = seq + 1
  local body = string.format('{"pair":"BTC/USD","side":"buy","type":"market","amount":"%s"}', amount)
  return wrk.format("POST", "/api/orders", {
    ["Authorization"] = "Bearer " .. tokens[math.random(n)],
    ["Content-Type"] = "application/json",
    ["Accept"] = "application/json",
    ["Idempotency-Key"] = string.format("%s-%d-%d-%d", run, os.time(), tid, seq),
  }, body)
end

done = common.done(run)
