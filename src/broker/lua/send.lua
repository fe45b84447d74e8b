-- ARGV: 3 id, 4 wid, 5 nonblock (1|0), 6.. messages "NODE\nTAG\nBYTES".
-- All or none: handed to the longest-waiting readers that take them
-- (while nothing is queued, so order holds), the rest queued, if the
-- capacity allows; else EAGAIN (nonblock) or 'full', the sender listed.
-- broadcast with receivers: the same for each receiving process, with
-- its own copies and its own readers (the capacity is per process).
fence()
local id, wid, nonblock = ARGV[3], ARGV[4], ARGV[5] == '1'
local b = box(id)
local meta = redis.call('HMGET', b, 'rule', 'capacity', 'maxsize')
if not meta[1] then
  fail('EIDRM the mailbox was removed')
end
local cap, maxsize = tonumber(meta[2]), tonumber(meta[3])
local raws = {}
for i = 6, #ARGV do
  if payload_len(ARGV[i]) > maxsize then
    fail('EMSGSIZE a message is larger than the mailbox allows')
  end
  raws[#raws + 1] = ARGV[i]
end

-- Who takes what: one plan per queue. who = nil for the shared queue.
local function plan(q, who)
  local qlen = redis.call('LLEN', q)
  local waiters = {}
  if qlen == 0 then
    waiters = redis.call('LRANGE', b .. ':w', 0, -1)
  end
  local used, handed, k = {}, {}, 0
  for i, raw in ipairs(raws) do
    local len, found = payload_len(raw), nil
    for j, w in ipairs(waiters) do
      if not used[j] then
        local f = lines(w, 5)
        if alive(f[1]) and (not who or who == f[3] .. ' ' .. f[1])
          and fits(f[4], tonumber(f[5]), len) then
          found = j
          break
        end
      end
    end
    if not found then
      break
    end
    used[found] = true
    handed[i] = waiters[found]
    k = i
  end
  return {q = q, who = who, handed = handed, k = k,
    room = cap < 0 or qlen + #raws - k <= cap}
end

local plans = {}
if meta[1] == 'broadcast' then
  for _, who in ipairs(redis.call('HKEYS', b .. ':r')) do
    if alive(string.match(who, '^%d+ (.*)$')) then
      plans[#plans + 1] = plan(copies(id, who), who)
    end
  end
end
local broadcast = #plans > 0
if not broadcast then
  -- Not broadcast, or nobody receives yet: the message waits for the
  -- first reader.
  plans[1] = plan(b .. ':q', nil)
end
for _, p in ipairs(plans) do
  if not p.room then
    if nonblock then
      fail('EAGAIN the mailbox is full')
    end
    local me = NODE .. '\n' .. wid
    redis.call('LREM', b .. ':sw', 0, me)
    redis.call('RPUSH', b .. ':sw', me)
    redis.call('SADD', 'ipcfs:seen:' .. NODE, id)
    return 'full'
  end
end
for _, p in ipairs(plans) do
  for i = 1, p.k do
    redis.call('LREM', b .. ':w', 1, p.handed[i])
    deliver(id, lines(p.handed[i], 5), {raws[i]}, p.who)
  end
  for i = p.k + 1, #raws do
    redis.call('RPUSH', p.q, raws[i])
  end
end
if broadcast then
  -- The first copy acknowledged issues the receipt (ack.lua).
  for _, raw in ipairs(raws) do
    local parts = lines(raw, 3)
    if parts[2] ~= '' then
      redis.call('HSET', b .. ':bt', parts[1] .. ' ' .. parts[2], 1)
    end
  end
end
redis.call('HINCRBY', b, 'sent', #raws)
return 'ok'
