--[[
  Functions to change a worker's status (idle, busy, draining, or false when it goes) and keep the
  per-status worker counters right. The old status is read from the worker states hash, which does
  not expire with the worker hash; changeWorkerState is for a caller that has read it already.
]]
local function changeWorkerState(prefix, statesKey, statsKey, workerId, old, newState)
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

local function setWorkerState(prefix, statesKey, statsKey, workerId, newState)
  return changeWorkerState(prefix, statesKey, statsKey, workerId, rcall('HGET', statesKey, workerId), newState)
end
