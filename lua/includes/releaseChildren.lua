--[[
  Function to settle the waiting children of a job that completed (its hash has the `children` flag,
  read by the caller's lease check, so a job without children costs nothing): each child still
  waiting has one open parent fewer, and a child with none left becomes pending (next sequence
  number, its type's pending set), or scheduled when its own start (run_at, kept from its delay or
  run_at) is still ahead. The children set is deleted: a child added later finds the parent
  completed. `stats`: see countStat; `released`: the `pending` events of the call, gathered for one
  entry (emitJobEvents, 8 values a job: id, type, status, priority).
]]
--- @include "countStat"
--- @include "enqueuePending"
local function releaseChildren(prefix, waitingKey, seqKey, scheduledKey, cfg, stats, released, jobId, now)
  local childrenKey = prefix .. 'children:' .. jobId
  local children = rcall('SMEMBERS', childrenKey)
  table.sort(children)  -- the same order on every Redis
  rcall('DEL', childrenKey)
  for _, childId in ipairs(children) do
    local childKey = prefix .. 'job:' .. childId
    local f = rcall('HMGET', childKey, 'status', 'type', 'priority', 'run_at', 'group')
    if f[1] == 'waiting' and rcall('HINCRBY', childKey, 'open_parents', -1) <= 0 then
      rcall('ZREM', waitingKey, childId)
      countStat(stats, 'waiting:' .. f[2], -1)
      local status = 'pending'
      if f[4] and tonumber(f[4]) > now then
        status = 'scheduled'
        rcall('ZADD', scheduledKey, f[4], childId)
        countStat(stats, 'scheduled:' .. f[2], 1)
        rcall('HSET', childKey, 'status', 'scheduled', 'updated_at', now)
      else
        enqueuePending(prefix, seqKey, cfg, childKey, childId, f[2], tonumber(f[3]), now, f[5])
      end
      local n = #released
      released[n + 1], released[n + 2], released[n + 3], released[n + 4] = 'id', childId, 'type', f[2]
      released[n + 5], released[n + 6], released[n + 7], released[n + 8] = 'status', status, 'priority', f[3]
    end
  end
end
