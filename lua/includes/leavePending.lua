--[[
  Function to take a job out of its type's pending set, and out of its group's when the type has
  groups (a group left without pending work leaves the type's line, or the parked groups), for a
  cancel, an expiry or a claim of this one job. `group`: the job's group field (false: none). Returns 1 when the job was
  pending, else 0.
]]
--- @include "groupKey"
local function leavePending(prefix, cfg, jobId, jobType, group)
  local removed = rcall('ZREM', prefix .. 'pending:' .. jobType, jobId)
  if cfg.grouped and cfg.grouped[jobType] then
    local key = groupKey(prefix, jobType, group or '')
    if rcall('ZREM', key, jobId) == 1 and rcall('ZCARD', key) == 0 then
      rcall('ZREM', prefix .. 'groups:' .. jobType, group or '')
      rcall('SREM', prefix .. 'parked:' .. jobType, group or '')
    end
  end
  return removed
end
