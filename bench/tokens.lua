-- GETs the path of the URL with a bearer token taken in turn from the comma-separated list
-- args[1]: one user per connection on average, where a user's requests in flight are limited.
-- Each thread starts at another place of the list so that the threads do not walk it in step.
local tokens, n = {}, 0
local threads = 0
function setup(thread)
  thread:set("offset", threads)
  threads = threads + 1
end
function init(args)
  for token in string.gmatch(args[1], "[^,]+") do tokens[#tokens + 1] = token end
  n = (offset or 0) * math.floor(#tokens / 2)
end
function request()
  n = n + 1
  local headers = {["Authorization"] = "Bearer " .. tokens[(n - 1) % #tokens + 1]}
  return wrk.format("GET", nil, headers)
end
