--[[
  Function to keep a finished set (completed, failed or cancelled) within keepMax jobs: it removes at
  most `atMost` of the oldest ids over it, with their hashes, so the set converges without ever
  running a long script.
]]
local function trimSet(prefix, setKey, keepMax, atMost)
  if atMost <= 0 then
    return
  end
  local excess = rcall('ZCARD', setKey) - keepMax
  if excess > 0 then
    local old = rcall('ZPOPMIN', setKey, math.min(excess, atMost))
    for i = 1, #old, 2 do
      -- the job's log and children set go with it, in the same call
      rcall('DEL', prefix .. 'job:' .. old[i], prefix .. 'logs:' .. old[i], prefix .. 'children:' .. old[i])
    end
  end
end
