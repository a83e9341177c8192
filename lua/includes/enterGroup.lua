--[[
  Function to file a job that has just entered its type's pending set (with `score`) under its
  group too, when the type has groups (cfg.grouped; groupedQueue claims round-robin across them).
  A job with a group makes its type grouped if it is not yet (markGrouped): so a meta hash written
  again after a loss heals. A group that had no pending work joins the back of the type's line with
  `turn` (a sequence number, so later than every turn given so far). A type without groups and a
  job without a group cost no call.
]]
--- @include "groupKey"
--- @include "markGrouped"
local function enterGroup(prefix, cfg, jobType, group, jobId, score, turn)
  if group and group ~= '' then
    if not (cfg.grouped and cfg.grouped[jobType]) then
      markGrouped(prefix, cfg, jobType, turn, jobId)
    end
  elseif cfg.grouped and cfg.grouped[jobType] then
    group = ''
  else
    return
  end
  rcall('ZADD', groupKey(prefix, jobType, group), score, jobId)
  rcall('ZADD', prefix .. 'groups:' .. jobType, 'NX', turn, group)
end
