--[[
  Function for the pending jobs of a grouped type as a claim sees them (docs/job-control.md 4):
  round-robin across the type's groups with pending work, priority then age within a group. The
  line is the zset `{Q}:groups:<type>`, each group scored by its turn; a claim reads the first `n`
  groups once (no claim takes more than n jobs), takes one job from each in turn, and, at finish,
  sends every group it served to the back of the line in the order it served them (fresh turns
  from the queue's sequence) or out of it when it has no pending job left. So one claim costs
  O(log n) per job and per group served, whatever the number of jobs and groups.

  `groupLimit` (the type's group_concurrency, nil: none): a group with that many jobs active
  (`{Q}:group_active:<type>`, kept by activateJob and endLease) is parked, out of the line in
  `{Q}:parked:<type>`, so it cannot hold the line's head; endLease puts it back (unparkGroup) when
  one of its jobs ends. Group '' (the jobs without a group) has no such limit.

  Returns a table with peek() (the next job's id and pending score, or nil), take(id) (takes the
  peeked job out of its group and of the pending set; false for a leftover that was no longer
  pending, which is dropped) and finish().
]]
--- @include "groupKey"
local function groupedQueue(prefix, pendingKey, jobType, n, groupLimit)
  local lineKey, parkedKey = prefix .. 'groups:' .. jobType, prefix .. 'parked:' .. jobType
  local line = rcall('ZRANGE', lineKey, 0, n - 1)
  local at, peeked, served, order = 1, nil, {}, {}
  local room, full = {}, {}  -- group -> jobs it may still start in this call; groups that used it up
  if groupLimit and #line > 0 then
    local active = rcall('HMGET', prefix .. 'group_active:' .. jobType, unpack(line))
    local open = {}
    for i, group in ipairs(line) do
      room[group] = group ~= '' and groupLimit - (tonumber(active[i]) or 0) or nil
      if room[group] and room[group] <= 0 then
        rcall('ZREM', lineKey, group)
        rcall('SADD', parkedKey, group)
      else
        open[#open + 1] = group
      end
    end
    line = open
  end
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
    if room[group] then
      room[group] = room[group] - 1
      if room[group] <= 0 then  -- at its limit: out of this claim's line, parked at finish
        full[group] = true
        table.remove(line, at)
        return true
      end
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
      if rcall('EXISTS', groupKey(prefix, jobType, group)) == 0 then
        rcall('ZREM', lineKey, group)
        if groupLimit then  -- (an enqueue may have put a parked group in the line too)
          rcall('SREM', parkedKey, group)
        end
      elseif full[group] then
        rcall('ZREM', lineKey, group)
        rcall('SADD', parkedKey, group)
      else
        rcall('ZADD', lineKey, turn + i, group)
      end
    end
  end
  return queue
end
