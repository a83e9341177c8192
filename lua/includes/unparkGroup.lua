--[[
  Function to put a group its type's per-group limit had parked (`{Q}:parked:<type>`, groupedQueue)
  back at the back of the type's line, when it has pending jobs; a group that was not parked costs
  one SREM.
]]
--- @include "groupKey"
local function unparkGroup(prefix, jobType, group)
  if rcall('SREM', prefix .. 'parked:' .. jobType, group) == 1
      and rcall('EXISTS', groupKey(prefix, jobType, group)) == 1 then
    rcall('ZADD', prefix .. 'groups:' .. jobType, rcall('INCR', prefix .. 'seq'), group)
  end
end
