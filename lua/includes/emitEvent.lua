--[[
  Function to append one transition to the queue's event stream, trimmed approximately so that the
  stream never grows without bound. Returns the entry id.
]]
local function emitEvent(eventsKey, maxLen, ...)
  return rcall('XADD', eventsKey, 'MAXLEN', '~', maxLen, '*', ...)
end
