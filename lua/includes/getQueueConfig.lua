--[[
  Function to read the queue settings that the loader wrote into the meta hash, with safe defaults
  when a field is missing.
]]
local function getQueueConfig(metaKey)
  local v = rcall('HMGET', metaKey, 'events_maxlen', 'keep_completed_ms', 'keep_completed_max',
    'keep_failed_ms', 'keep_failed_max')
  return {
    eventsMaxLen = tonumber(v[1]) or 10000,
    keepCompletedMs = tonumber(v[2]) or 86400000,
    keepCompletedMax = tonumber(v[3]) or 10000,
    keepFailedMs = tonumber(v[4]) or 604800000,
    keepFailedMax = tonumber(v[5]) or 10000,
  }
end
