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
-- Waiting readers too small for the message that would go to them are
-- passed over and told so (small), as a local mount answers them EMSGSIZE.
local function candidate(f, who)
  return alive(f[1]) and (not who or who == f[3] .. ' ' .. f[1])
end
local function plan(q, who)
  local qlen = redis.call('LLEN', q)
  local waiters = {}
  if qlen == 0 then
    waiters = redis.call('LRANGE', b .. ':w', 0, -1)
  end
  local used, handed, small, k = {}, {}, {}, 0
  for i, raw in ipairs(raws) do
    local len, found = payload_len(raw), nil
    for j, w in ipairs(waiters) do
      if not used[j] then
        local f = lines(w, 5)
        if candidate(f, who) then
          if fits(f[4], tonumber(f[5]), len) then
            found = j
            break
          end
          used[j] = true
          small[#small + 1] = {w, len}
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
  return {q = q, who = who, handed = handed, small = small, k = k,
    room = cap < 0 or qlen + #raws - k <= cap}
end

-- Tells the waiting reader w that a message of len bytes is too big for it.
local function too_small(w, len)
  local f = lines(w, 5)
  redis.call('LREM', b .. ':w', 1, w)
  post(f[1], 't', 'toobig', 'm', id, 'w', f[2], 'n', len)
end

-- Blocked senders go in in the order they came: a sender that is not
-- the first of the list waits behind it.
local me = NODE .. '\n' .. wid
local first = redis.call('LINDEX', b .. ':sw', 0)
if first and first ~= me then
  if nonblock then
    fail('EAGAIN senders wait before this one')
  end
  if redis.call('LPOS', b .. ':sw', me) == false then
    redis.call('RPUSH', b .. ':sw', me)
    redis.call('SADD', 'ipcfs:seen:' .. NODE, id)
  end
  return 'full'
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
    -- Readers too small for this sender's largest message would wait
    -- with it for ever: they are told now.
    local largest = 0
    for _, raw in ipairs(raws) do
      largest = math.max(largest, payload_len(raw))
    end
    for _, w in ipairs(redis.call('LRANGE', b .. ':w', 0, -1)) do
      local f = lines(w, 5)
      if candidate(f, p.who) and not fits(f[4], tonumber(f[5]), largest) then
        too_small(w, largest)
      end
    end
    if first ~= me then
      redis.call('RPUSH', b .. ':sw', me)
      redis.call('SADD', 'ipcfs:seen:' .. NODE, id)
    end
    return 'full'
  end
end
for _, p in ipairs(plans) do
  for _, s in ipairs(p.small) do
    too_small(s[1], s[2])
  end
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
if first == me then
  -- In: the next blocked sender may find room too.
  redis.call('LPOP', b .. ':sw')
  room(id)
end
return 'ok'
