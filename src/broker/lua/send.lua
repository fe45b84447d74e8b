-- ARGV: 3 id, 4 wid, 5 pid, 6 nonblock (1|0), 7 again (1|0),
-- 8.. messages "NODE\nTAG\nBYTES".
-- All or none: in at once if no sender waits before it and there is room
-- (plans_for); else EAGAIN (nonblock), or the sender is listed as blocked
-- with its messages kept on the broker ('full'): they go in when room
-- comes (pump) or a reader takes them, and the node is told (t=sent).
-- again: the call was listed before the broker went away; if the broker
-- still has it, or let it in already (a t=sent waits in the inbox),
-- nothing more is done.
fence()
local id, wid, pid = ARGV[3], ARGV[4], ARGV[5]
local nonblock, again = ARGV[6] == '1', ARGV[7] == '1'
local b = box(id)
local meta = redis.call('HMGET', b, 'rule', 'maxsize', 'capacity')
if not meta[1] then
  fail('EIDRM the mailbox was removed')
end
admit(id, pid .. ' ' .. NODE, 's', meta[1])
local me = NODE .. '\n' .. wid .. '\n' .. pid
if again then
  if redis.call('EXISTS', offer_key(id, me)) == 1 or went_in(id, wid) then
    return 'full'
  end
end
local maxsize = tonumber(meta[2])
local raws = {}
for i = 8, #ARGV do
  if payload_len(ARGV[i]) > maxsize then
    fail('EMSGSIZE a message is larger than the mailbox allows')
  end
  raws[#raws + 1] = ARGV[i]
end

-- Blocked senders go in in the order they came.
if redis.call('LLEN', b .. ':sw') == 0 then
  local plans, broadcast, room = plans_for(id, raws, {meta[1], meta[3]})
  if room then
    commit(id, plans, raws, broadcast)
    return 'ok'
  end
end
if nonblock then
  fail('EAGAIN the mailbox is full')
end
redis.call('RPUSH', offer_key(id, me), unpack(raws))
redis.call('RPUSH', b .. ':sw', me)
redis.call('SADD', 'ipcfs:seen:' .. NODE, id)
if pump(id, me) then
  return 'ok'
end
return 'full'
