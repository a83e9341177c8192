--[[
  Function to add to a counter of the stats hash. `stats` is the stats hash's key (the counter
  changes at once) or a table that a batch script fills and hands to flushStats before it returns,
  so n jobs of one type cost one HINCRBY per counter instead of n.
]]
local function countStat(stats, field, delta)
  if type(stats) == 'table' then
    stats[field] = (stats[field] or 0) + delta
  else
    rcall('HINCRBY', stats, field, delta)
  end
end
