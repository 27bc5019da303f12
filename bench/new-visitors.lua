-- wrk script: every request comes from a new visitor (a new X-Forwarded-For), so every
-- request is a new (visitor, path) pair and a new row. The first octet is distinct for
-- each thread and each round (the script's argument), so no round repeats another's visitors.
local counter = 0
local thread_no = 0
local round = 0

function setup(thread)
  thread_no = thread_no + 1
  thread:set("id", thread_no)
end

function init(args)
  round = tonumber(args[1] or "0")
end

function request()
  counter = counter + 1
  local first = 10 + (round * 8 + id) % 200
  local xff = string.format("%d.%d.%d.%d", first, math.floor(counter / 65536) % 256, math.floor(counter / 256) % 256, counter % 256)
  return wrk.format("GET", "/call/blog", {["X-Forwarded-For"] = xff, ["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0"})
end
