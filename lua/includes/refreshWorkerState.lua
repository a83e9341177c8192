--[[
  Function to set a worker idle or busy from the number of jobs it holds; a draining worker stays
  draining until it says otherwise.
]]
--- @include "setWorkerState"
local function refreshWorkerState(prefix, statesKey, statsKey, workerId)
  if rcall('HGET', statesKey, workerId) == 'draining' then
    return
  end
  if rcall('SCARD', prefix .. 'worker:' .. workerId .. ':jobs') > 0 then
    setWorkerState(prefix, statesKey, statsKey, workerId, 'busy')
  else
    setWorkerState(prefix, statesKey, statsKey, workerId, 'idle')
  end
end
