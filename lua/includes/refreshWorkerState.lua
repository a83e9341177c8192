--[[
  Function to set a worker idle or busy from the number of jobs it holds; a draining worker stays
  draining until it says otherwise.
]]
--- @include "setWorkerState"
local function refreshWorkerState(prefix, workerId)
  if rcall('HGET', prefix .. 'worker_states', workerId) == 'draining' then
    return
  end
  if rcall('SCARD', prefix .. 'worker:' .. workerId .. ':jobs') > 0 then
    setWorkerState(prefix, workerId, 'busy')
  else
    setWorkerState(prefix, workerId, 'idle')
  end
end
