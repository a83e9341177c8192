--[[
  Function to fail the waiting children of a job that ended failed or cancelled for good (its hash
  has the `children` flag, read by the caller's HMGET, so a job without children costs nothing):
  each child still waiting ends failed with the error "dependency failed: <parent id> <status>",
  final (no retry, whatever its attempts), and so do its own waiting children, and theirs. A
  worklist, not recursion, so a deep chain cannot exhaust Lua's stack. The children set of each
  settled job is deleted: it has nothing left to settle (a child added later finds the parent
  finished). `flowKeys`: {waiting = the waiting zset, expiries = the expiries zset, failed = the
  failed zset}.
]]
--- @include "countStat"
--- @include "emitEvent"
--- @include "trimFinished"
local function failChildren(prefix, flowKeys, statsKey, eventsKey, cfg, jobId, status, now)
  local work, at = {jobId, status}, 1
  while work[at] do
    local parentId, parentStatus = work[at], work[at + 1]
    at = at + 2
    local childrenKey = prefix .. 'children:' .. parentId
    local children = rcall('SMEMBERS', childrenKey)
    rcall('DEL', childrenKey)
    for _, childId in ipairs(children) do
      local childKey = prefix .. 'job:' .. childId
      local f = rcall('HMGET', childKey, 'status', 'type', 'expires_at', 'children', 'attempts')
      -- a child that expired, was cancelled or already failed through another parent is left alone
      if f[1] == 'waiting' then
        rcall('ZREM', flowKeys.waiting, childId)
        if f[3] then
          rcall('ZREM', flowKeys.expiries, childId)
        end
        local err = 'dependency failed: ' .. parentId .. ' ' .. parentStatus
        rcall('HSET', childKey, 'status', 'failed', 'error', err, 'finished_at', now, 'updated_at', now)
        countStat(statsKey, 'waiting:' .. f[2], -1)
        countStat(statsKey, 'failed:' .. f[2], 1)
        trimFinished(prefix, flowKeys.failed, childKey, childId, now, cfg.keep_failed_ms, cfg.keep_failed_max,
          4)
        emitEvent(eventsKey, cfg.events_maxlen, 'ev', 'failed', 'id', childId, 'type', f[2], 'error', err,
          'final', 1, 'attempt', f[5])
        if f[4] then
          work[#work + 1], work[#work + 2] = childId, 'failed'
        end
      end
    end
  end
end
