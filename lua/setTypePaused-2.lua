--[[
  Pause or resume a job type: while paused, no worker is given a job of it (claimForWorker passes
  its pending set by; claimJobById answers PAUSED), and its jobs wait, pending, in their order.
  Adding jobs of a paused type goes on as usual. The paused types are a JSON array in the meta hash,
  which every claiming script reads already (getQueueConfig), so pausing costs the hot path nothing.
  Pausing a paused type, or resuming one that is not, changes nothing and emits nothing.

  Input:
    KEYS[1] meta hash
    KEYS[2] events stream

    ARGV[1] key prefix, "{queue}:"
    ARGV[2] job type
    ARGV[3] "1" to pause, "0" to resume

  Output:
    {changed (1 or 0), pending jobs of the type, paused types as a JSON array}
    error reply "ERR_BAD_ARG ..." or "ERR_NO_CONFIG ..." (nothing written)

  Events:
    paused or resumed (type, pending): the hubs wake the type's workers on resumed
]]
local rcall = redis.call
--- @include "includes/getQueueConfig"
--- @include "includes/emitEvent"

local metaKey, eventsKey = KEYS[1], KEYS[2]
local prefix, jobType, pause = ARGV[1], ARGV[2], ARGV[3] == '1'
local cfg = getQueueConfig(metaKey)
if cfg.err then
  return cfg
end
if jobType == '' or #jobType > cfg.max_job_type_bytes then
  return redis.error_reply('ERR_BAD_ARG a job type is 1 to ' .. cfg.max_job_type_bytes .. ' bytes')
end
local paused, kept, was = {}, {}, false
for _, name in ipairs(cfg.paused) do
  if name == jobType then
    was = true
  else
    kept[#kept + 1] = name
  end
end
if pause then
  kept[#kept + 1] = jobType
end
local pending = rcall('ZCARD', prefix .. 'pending:' .. jobType)
if was == pause then
  paused = cfg.paused
else
  paused = kept
  table.sort(paused)
  if #paused == 0 then
    rcall('HDEL', metaKey, 'paused')
  else
    rcall('HSET', metaKey, 'paused', cjson.encode(paused))
  end
  emitEvent(eventsKey, cfg.events_maxlen, 'ev', pause and 'paused' or 'resumed', 'id', '', 'type', jobType,
    'pending', pending)
end
return {was == pause and 0 or 1, pending, #paused == 0 and '[]' or cjson.encode(paused)}
