-- wrk script: every request comes from a new visitor (a new X-Forwarded-For), so every
-- request is a new (visitor, path) pair and a new row. Each thread counts its own range.
local counter = 0

local thread_no = 0

function setup(thread)
  thread_no = thread_no + 1
  thread:set("base", thread_no * 16777216)
end

function request()
  counter = counter + 1
  local n = base + counter
  local xff = string.format("%d.%d.%d.%d", 10 + math.floor(n / 16777216) % 200, math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
  return wrk.format("GET", "/call/blog", {["X-Forwarded-For"] = xff, ["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0"})
end
