--[[
  Function to make a job type grouped, at its first job with a group: its name joins the meta
  hash's `grouped` list (read by getQueueConfig), and the jobs it has pending, none of which has a
  group, become group '' (one ZUNIONSTORE, once a type), which takes its turns like any group. From
  then on every job of the type that becomes pending is filed under its group (enterGroup), and
  claims go round-robin across the groups (groupedQueue). A type stays grouped: its ungrouped jobs
  keep their fair share as group ''. `jobId`: the job with a group that made it grouped, already in
  the pending set, so not one of group ''.
]]
--- @include "groupKey"
local function markGrouped(prefix, cfg, jobType, turn, jobId)
  cfg.grouped = cfg.grouped or {}
  cfg.grouped[jobType] = true
  local names = {}
  for name in pairs(cfg.grouped) do
    names[#names + 1] = name
  end
  table.sort(names)
  rcall('HSET', prefix .. 'meta', 'grouped', cjson.encode(names))
  local pendingKey = prefix .. 'pending:' .. jobType
  local ungrouped = groupKey(prefix, jobType, '')
  if rcall('ZUNIONSTORE', ungrouped, 1, pendingKey) - rcall('ZREM', ungrouped, jobId) > 0 then
    rcall('ZADD', prefix .. 'groups:' .. jobType, turn, '')
  end
end
