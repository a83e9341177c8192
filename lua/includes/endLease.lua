--[[
  Function to take an active job off its lease: out of the active set, out of its worker's job set,
  and one fewer active job of its type. Returns the job's type.
]]
local function endLease(prefix, activeKey, statsKey, jobKey, jobId)
  local f = rcall('HMGET', jobKey, 'type', 'worker')
  rcall('ZREM', activeKey, jobId)
  if f[2] then
    rcall('SREM', prefix .. 'worker:' .. f[2] .. ':jobs', jobId)
  end
  rcall('HINCRBY', statsKey, 'active:' .. f[1], -1)
  rcall('HDEL', jobKey, 'lease_until')
  return f[1]
end
