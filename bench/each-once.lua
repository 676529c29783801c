-- GETs each path of file args[1] once, in order, then stops: every request is a first time.
-- Run it with one thread (-t1) so that no path is requested twice, and with more paths than the
-- run can request: the thread stops when they run out, but wrk still divides by the whole run.
local paths, next_path = {}, 0
function init(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
end
function request()
  next_path = next_path + 1
  return wrk.format("GET", paths[(next_path - 1) % #paths + 1])
end
function response()
  if next_path >= #paths then wrk.thread:stop() end
end
