-- GET one page (ETX_PATH) signed in by the cookies in ETX_COOKIE, as a browser asks for it.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

wrk.method = "GET"
wrk.path = os.getenv("ETX_PATH") or error("ETX_PATH is not set")
wrk.headers["Cookie"] = os.getenv("ETX_COOKIE") or error("ETX_COOKIE is not set")
wrk.headers["Accept"] = "text/html"

done = common.done(os.getenv("ETX_LABEL") or "page")
