-- POST /api/transfers/p2p between random pairs of users read from ETX_USERS (lines
-- "token username"). ETX_HOT=1 uses only the first two users, so every transfer hits the same two
-- balances in alternating directions. Each request carries a fresh Idempotency-Key.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local users_file = os.getenv("ETX_USERS") or error("ETX_USERS is not set")
local hot = os.getenv("ETX_HOT") == "1"
local run = os.getenv("ETX_LABEL") or "transfer"
local amount = os.getenv("ETX_AMOUNT") or "1.00"

local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
  table.insert(threads, thread)
end

local tokens, names, n, seq

function init(args)
  tokens, names = {}, {}
  for line in io.lines(users_file) do
    local t, u = line:match("^(%S+)%s+(%S+)$")
    if t then
      table.insert(tokens, t)
      table.insert(names, u)
    end
  end
  n = hot and 2 or #tokens
  if n < 2 then error("need at least two users in " .. users_file) end
  math.randomseed(os.time() * 1000 + tid)
  seq = 0
end

function request()
  local i = math.random(n)
  local j = math.random(n - 1)
  if j >= i then j = j + 1 end
  seq = seq + 1
  local body = string.format('{"recipient":"%s","amount":"%s","currency":"USD"}', names[j], amount)
  return wrk.format("POST", "/api/transfers/p2p", {
    ["Authorization"] = "Bearer " .. tokens[i],
    ["Content-Type"] = "application/json",
    ["Accept"] = "application/json",
    ["Idempotency-Key"] = string.format("%s-%d-%d-%d", run, os.time(), tid, seq),
  }, body)
end

done = common.done(run)
