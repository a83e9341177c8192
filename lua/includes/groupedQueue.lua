--[[
  Function for the pending jobs of a grouped type as a claim sees them (docs/job-control.md 4):
  round-robin across the type's groups with pending work, priority then age within a group. The
  line is the zset `{Q}:groups:<type>`, each group scored by its turn; a claim reads the first `n`
  groups once (no claim takes more than n jobs), takes one job from each in turn, and, at finish,
  sends every group it served to the back of the line in the order it served them (fresh turns
  from the queue's sequence) or out of it when it has no pending job left. So one claim costs
  O(log n) per job and per group served, whatever the number of jobs and groups.

  Returns a table with peek() (the next job's id and pending score, or nil), take(id) (takes the
  peeked job out of its group and of the pending set; false for a leftover that was no longer
  pending, which is dropped) and finish().
]]
--- @include "groupKey"
local function groupedQueue(prefix, pendingKey, jobType, n)
  local lineKey = prefix .. 'groups:' .. jobType
  local line = rcall('ZRANGE', lineKey, 0, n - 1)
  local at, peeked, served, order = 1, nil, {}, {}
  local queue = {}
  function queue.peek()
    if peeked then
      return peeked[1], peeked[2]
    end
    while #line > 0 do
      if at > #line then
        at = 1
      end
      local head = rcall('ZRANGE', groupKey(prefix, jobType, line[at]), 0, 0, 'WITHSCORES')
      if head[1] then
        peeked = {head[1], tonumber(head[2])}
        return peeked[1], peeked[2]
      end
      if not served[line[at]] then  -- no pending job left (every path that empties one drops it)
        rcall('ZREM', lineKey, line[at])
      end
      table.remove(line, at)
    end
    return nil
  end
  function queue.take(jobId)
    local group = line[at]
    peeked = nil
    rcall('ZREM', groupKey(prefix, jobType, group), jobId)
    if rcall('ZREM', pendingKey, jobId) == 0 then
      return false
    end
    if not served[group] then
      served[group] = true
      order[#order + 1] = group
    end
    at = at + 1
    return true
  end
  function queue.finish()
    if #order == 0 then
      return
    end
    local turn = rcall('INCRBY', prefix .. 'seq', #order) - #order
    for i, group in ipairs(order) do
      if rcall('EXISTS', groupKey(prefix, jobType, group)) == 1 then
        rcall('ZADD', lineKey, turn + i, group)
      else
        rcall('ZREM', lineKey, group)
      end
    end
  end
  return queue
end
