-- ARGV: 3 id, 4 wid, 5 nonblock (1|0), 6.. messages "NODE\nTAG\nBYTES".
-- All or none: handed to the longest-waiting readers that take them
-- (while nothing is queued, so order holds), the rest queued, if the
-- capacity allows; else EAGAIN (nonblock) or 'full', the sender listed.
fence()
local id, wid, nonblock = ARGV[3], ARGV[4], ARGV[5] == '1'
local b = box(id)
local meta = redis.call('HMGET', b, 'rule', 'capacity', 'maxsize')
if not meta[1] then
  fail('EIDRM the mailbox was removed')
end
if meta[1] == 'broadcast' then
  fail('EOPNOTSUPP broadcast is not supported on a broker mount')
end
local cap, maxsize = tonumber(meta[2]), tonumber(meta[3])
local raws = {}
for i = 6, #ARGV do
  if payload_len(ARGV[i]) > maxsize then
    fail('EMSGSIZE a message is larger than the mailbox allows')
  end
  raws[#raws + 1] = ARGV[i]
end
local q = b .. ':q'
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
      if alive(f[1]) and fits(f[4], tonumber(f[5]), len) then
        found = j
        break
      end
    end
  end
  if not found then
    break
  end
  used[found] = true
  handed[i] = found
  k = i
end
if cap >= 0 and qlen + #raws - k > cap then
  if nonblock then
    fail('EAGAIN the mailbox is full')
  end
  local me = NODE .. '\n' .. wid
  redis.call('LREM', b .. ':sw', 0, me)
  redis.call('RPUSH', b .. ':sw', me)
  redis.call('SADD', 'ipcfs:seen:' .. NODE, id)
  return 'full'
end
for i = 1, k do
  local w = waiters[handed[i]]
  redis.call('LREM', b .. ':w', 1, w)
  deliver(id, lines(w, 5), {raws[i]})
end
for i = k + 1, #raws do
  redis.call('RPUSH', q, raws[i])
end
redis.call('HINCRBY', b, 'sent', #raws)
return 'ok'
