-- Alternates POST /cart/article (adds one of args[1]) and POST /cart/article/{args[1]}/decrement
-- with bearer token args[2], so the cart line stays small however long the run.
local article, token, n = nil, nil, 0
function init(args)
  article, token = args[1], args[2]
end
function request()
  n = n + 1
  local headers = {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}
  if n % 2 == 1 then
    return wrk.format("POST", "/cart/article", headers,
                      '{"articleId":"' .. article .. '","quantity":1}')
  end
  return wrk.format("POST", "/cart/article/" .. article .. "/decrement", headers, "")
end
