--[[
  Read the queue's counts, O(number of job types): current counts per status from the sets'
  cardinalities, per type from the pending sets and the counters, workers by status from the
  counters, and the paused and the limited types from the meta hash. Changes nothing.

  Input:
    KEYS[1] stats hash
    KEYS[2] types set
    KEYS[3] scheduled zset
    KEYS[4] active zset
    KEYS[5] completed zset
    KEYS[6] failed zset
    KEYS[7] cancelled zset
    KEYS[8] workers zset
    KEYS[9] meta hash
    KEYS[10] waiting zset (jobs waiting for their parents)

    ARGV[1] key prefix, "{queue}:"

  Output:
    {scheduled, active, completed, failed, cancelled, workers, {stats hash field, value, ...},
     {type, pending, ...}, paused types as a JSON array (or false when none is paused),
     the types' limits as a JSON object (or false when none has any, setTypeLimits), waiting}

  Events:
    none
]]
local rcall = redis.call
local prefix = ARGV[1]
local pending = {}
for _, jobType in ipairs(rcall('SMEMBERS', KEYS[2])) do
  pending[#pending + 1] = jobType
  pending[#pending + 1] = rcall('ZCARD', prefix .. 'pending:' .. jobType)
end
return {
  rcall('ZCARD', KEYS[3]), rcall('ZCARD', KEYS[4]), rcall('ZCARD', KEYS[5]),
  rcall('ZCARD', KEYS[6]), rcall('ZCARD', KEYS[7]), rcall('ZCARD', KEYS[8]),
  rcall('HGETALL', KEYS[1]), pending, rcall('HGET', KEYS[9], 'paused'),
  rcall('HGET', KEYS[9], 'limits'), rcall('ZCARD', KEYS[10]),
}
