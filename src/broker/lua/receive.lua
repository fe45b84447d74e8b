-- ARGV: 3 id, 4 wid, 5 pid, 6 framing (s|p|b), 7 size, 8 nonblock,
-- 9.. flights of this reader to acknowledge first (see ack.lua).
-- Takes messages as the framing allows, recorded as a flight
-- (ipcfs:flight:NODE) until ack; else lists the reader as waiting.
fence()
for i = 9, #ARGV do
  ack(ARGV[i])
end
local id, wid, pid, framing = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local size, nonblock = tonumber(ARGV[7]), ARGV[8] == '1'
local b = box(id)
-- Every mailbox has a rule: none, the mailbox is gone.
local rule = redis.call('HGET', b, 'rule')
if not rule then
  fail('EIDRM the mailbox was removed')
end
local who = pid .. ' ' .. NODE
admit(id, who, 'r', rule)
local wk = b .. ':w'
-- Listing a reader again (after an outage) replaces its old entry.
local prefix = NODE .. '\n' .. wid .. '\n'
for _, w in ipairs(redis.call('LRANGE', wk, 0, -1)) do
  if string.sub(w, 1, #prefix) == prefix then
    redis.call('LREM', wk, 0, w)
  end
end
-- broadcast: this process's own copies first, then what was sent before
-- anybody received.
local q, c = copies(id, who), who
if redis.call('LLEN', q) == 0 then
  q, c = b .. ':q', ''
end
-- The next message for this reader, without taking it: the head of its
-- queue, else (a rendezvous, not broadcast) the single message of the
-- first blocked sender, as on a local mount.
local function peek(queue_empty)
  local head = not queue_empty and redis.call('LINDEX', q, 0)
  if head then
    return head, nil
  end
  if c ~= '' or rule == 'broadcast' then
    return nil
  end
  local first = redis.call('LINDEX', b .. ':sw', 0)
  if first and alive(lines(first, 3)[1]) then
    local offered = redis.call('LRANGE', offer_key(id, first), 0, 1)
    if #offered == 1 then
      return offered[1], first
    end
  end
  return nil
end
local head = peek()
if head then
  local len = payload_len(head)
  if not fits(framing, size, len) then
    return {'toobig', len}
  end
  -- A batch takes as many as fit, what is queued in one go; taking makes
  -- room, and blocked senders go in behind (pump), so that a batch read
  -- takes them too, as a local mount's does.
  local raws, used = {}, 0
  local function room_for(l)
    if framing ~= 'b' then
      return #raws == 0
    end
    return #raws < 1024 and used + 4 + l <= size
  end
  local function take(r)
    raws[#raws + 1] = r
    used = used + 4 + payload_len(r)
  end
  repeat
    local before = #raws
    local n = 0
    local last = framing == 'b' and 1023 - #raws or 0
    for _, r in ipairs(redis.call('LRANGE', q, 0, last)) do
      if not room_for(payload_len(r)) then
        break
      end
      take(r)
      n = n + 1
    end
    if n > 0 then
      redis.call('LTRIM', q, n, -1)
    end
    if redis.call('LLEN', q) == 0 then
      local h, s = peek(true)
      if s and room_for(payload_len(h)) then
        take(h)
        redis.call('HINCRBY', b, 'sent', 1)
        sender_done(id, s, nil)
      end
    end
    if #raws > before then
      pump(id)
    end
  until #raws == before or framing ~= 'b'
  local args = {'t', 'flight', 'm', id, 'p', pid, 'n', #raws, 'c', c}
  for i, r in ipairs(raws) do
    args[#args + 1] = 'b' .. i
    args[#args + 1] = r
  end
  -- Kept apart from the inbox, so that the pump is not woken for it.
  local fid = 'F' .. redis.call('XADD', 'ipcfs:flight:' .. NODE, '*', unpack(args))
  -- Counted now, so that status shows it at once (the ack may wait for
  -- the reader's next read).
  redis.call('HINCRBY', b, 'received', #raws)
  local out = {'msgs', fid}
  for _, r in ipairs(raws) do
    out[#out + 1] = r
  end
  return out
end
if nonblock then
  return {'empty'}
end
redis.call('RPUSH', wk, NODE .. '\n' .. wid .. '\n' .. pid .. '\n' .. framing .. '\n' .. size)
redis.call('SADD', 'ipcfs:seen:' .. NODE, id)
-- A waiting reader is room for a blocked sender (rendezvous, full).
pump(id)
return {'parked'}
