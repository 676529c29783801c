-- POSTs the JSON body in file args[1], with bearer token args[2] when it is not empty.
function init(args)
  local file = assert(io.open(args[1], "rb"))
  wrk.body = file:read("*a")
  file:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if args[2] ~= "" then wrk.headers["Authorization"] = "Bearer " .. args[2] end
end
