--[[
  Function to set a worker idle or busy from the number of jobs it holds; a draining worker stays
  draining until it says otherwise.
]]
--- @include "setWorkerState"
local function refreshWorkerState(prefix, statesKey, statsKey, workerId)
  local old = rcall('HGET', statesKey, workerId)
  if old == 'draining' then
    return
  end
  local held = rcall('SCARD', prefix .. 'worker:' .. workerId .. ':jobs')
  changeWorkerState(prefix, statesKey, statsKey, workerId, old, held > 0 and 'busy' or 'idle')
end
