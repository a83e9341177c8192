--[[
  Function to change a worker's status (idle, busy, draining, or false when it goes) and keep the
  per-status worker counters right. The old status is read from the worker states hash, which does
  not expire with the worker hash.
]]
local function setWorkerState(prefix, statesKey, statsKey, workerId, newState)
  local old = rcall('HGET', statesKey, workerId)
  if old == newState then
    return false
  end
  if old then
    rcall('HINCRBY', statsKey, 'workers:' .. old, -1)
  end
  if newState then
    rcall('HINCRBY', statsKey, 'workers:' .. newState, 1)
    rcall('HSET', statesKey, workerId, newState)
    rcall('HSET', prefix .. 'worker:' .. workerId, 'status', newState)
  else
    rcall('HDEL', statesKey, workerId)
  end
  return true
end
