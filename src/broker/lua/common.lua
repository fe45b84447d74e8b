-- The start of the function library (scripts.rs): what every function
-- shares. Each function sets NODE and TOKEN from its ARGV[1], the calling
-- node, and ARGV[2], its incarnation token. Keys are built here from ids, so
-- this works on one Redis server, not on a Cluster (docs/DESIGN.md).
local NODE, TOKEN

local function fail(why)
  error({err = why})
end

local function box(id)
  return '{m:' .. id .. '}'
end

local function alive(node)
  return redis.call('EXISTS', 'ipcfs:node:' .. node) == 1
end

-- Fencing: a node whose lease ran out (and was maybe reaped) must not act.
local function fence()
  if redis.call('GET', 'ipcfs:node:' .. NODE) ~= TOKEN then
    fail('ESTALE this node lost its lease on the broker')
  end
end

-- The first k-1 newline-separated fields of s, and the rest as the k-th.
local function lines(s, k)
  local out, pos = {}, 1
  for i = 1, k - 1 do
    local nl = string.find(s, '\n', pos, true)
    if not nl then
      out[i] = string.sub(s, pos)
      pos = #s + 1
    else
      out[i] = string.sub(s, pos, nl - 1)
      pos = nl + 1
    end
  end
  out[k] = string.sub(s, pos)
  return out
end

-- A queued message is "SENDERNODE\nTAG\nBYTES": the length of BYTES.
local function payload_len(raw)
  local a = string.find(raw, '\n', 1, true)
  local b = string.find(raw, '\n', a + 1, true)
  return #raw - b
end

-- Whether a reader of framing s (stream), p (packets), b (batch) with a
-- buffer of size bytes can take a message of len bytes.
local function fits(framing, size, len)
  if framing == 's' then
    return true
  elseif framing == 'p' then
    return len <= size
  end
  return 4 + len <= size
end

local function fields(flat)
  local t = {}
  for i = 1, #flat, 2 do
    t[flat[i]] = flat[i + 1]
  end
  return t
end

-- An event for a live node's pump (a dead node's inbox is not grown).
local function post(node, ...)
  if alive(node) then
    redis.call('XADD', 'ipcfs:inbox:' .. node, '*', ...)
  end
end

local function everyone(...)
  for _, n in ipairs(redis.call('SMEMBERS', 'ipcfs:nodes')) do
    post(n, ...)
  end
end

-- Takes the longest-waiting live reader whose buffer holds len bytes off
-- the list of mailbox id (of the receiving process who = "PID NODE" only,
-- if given); drops readers of dead nodes on the way.
local function take_waiter(id, len, who)
  local k = box(id) .. ':w'
  for _, w in ipairs(redis.call('LRANGE', k, 0, -1)) do
    local f = lines(w, 5)
    if not alive(f[1]) then
      redis.call('LREM', k, 1, w)
    elseif (not who or who == f[3] .. ' ' .. f[1]) and fits(f[4], tonumber(f[5]), len) then
      redis.call('LREM', k, 1, w)
      return f
    end
  end
  return nil
end

-- broadcast: the copies queued for receiving process who ("PID NODE").
local function copies(id, who)
  return box(id) .. ':c:' .. who
end

-- Hands raws to the waiting reader f (NODE, WID, PID, FRAMING, SIZE);
-- c: "" for messages of the shared queue, else whose broadcast copies.
local function deliver(id, f, raws, c)
  local args = {'t', 'deliver', 'm', id, 'w', f[2], 'p', f[3], 'n', #raws, 'c', c or ''}
  for i, r in ipairs(raws) do
    args[#args + 1] = 'b' .. i
    args[#args + 1] = r
  end
  redis.call('XADD', 'ipcfs:inbox:' .. f[1], '*', unpack(args))
end

-- A blocked sender ("NODE\nWID\nPID" in {m:ID}:sw) keeps its messages on
-- the broker, in {m:ID}:o:NODE:WID, so that readers on any host can take
-- them as on a local mount: straight from the first blocked sender of a
-- rendezvous, or as room lets them in (ipcfs(7), ACROSS HOSTS).
local function offer_key(id, entry)
  local f = lines(entry, 3)
  return box(id) .. ':o:' .. f[1] .. ':' .. f[2]
end

-- Tells the waiting reader w of mailbox id that a message of len bytes is
-- too big for it: it is no longer listed, and is answered EMSGSIZE.
local function too_small(id, w, len)
  local f = lines(w, 5)
  redis.call('LREM', box(id) .. ':w', 1, w)
  post(f[1], 't', 'toobig', 'm', id, 'w', f[2], 'n', len)
end

local function candidate(f, who)
  return alive(f[1]) and (not who or who == f[3] .. ' ' .. f[1])
end

-- How messages raws would go in to mailbox id now, one plan per queue
-- (who = nil for the shared queue, else a broadcast receiver): handed to
-- the longest-waiting readers that take them (while nothing is queued,
-- so order holds), the rest queued, if the capacity allows. Waiting
-- readers too small for the message that would go to them are passed
-- over (small), as a local mount answers them EMSGSIZE.
-- Returns the plans, whether it is a broadcast, and whether all fit.
-- meta: the mailbox's {rule, capacity} if the caller read them already.
local function plans_for(id, raws, meta)
  local b = box(id)
  meta = meta or redis.call('HMGET', b, 'rule', 'capacity')
  local cap = tonumber(meta[2])
  local largest = 0
  for _, raw in ipairs(raws) do
    largest = math.max(largest, payload_len(raw))
  end
  local waiting = redis.call('LRANGE', b .. ':w', 0, -1)
  local function plan(q, who)
    local qlen = redis.call('LLEN', q)
    local waiters = {}
    if qlen == 0 then
      waiters = waiting
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
    -- Room as a local mount counts it: the waiting readers whose buffer
    -- holds the largest message, one message each, and the free places.
    local fitting = 0
    for _, w in ipairs(waiting) do
      local f = lines(w, 5)
      if candidate(f, who) and fits(f[4], tonumber(f[5]), largest) then
        fitting = fitting + 1
      end
    end
    return {q = q, who = who, handed = handed, small = small, k = k,
      room = cap < 0 or fitting + math.max(cap - qlen, 0) >= #raws}
  end
  local plans = {}
  if meta[1] == 'broadcast' then
    for _, who in ipairs(redis.call('HKEYS', b .. ':r')) do
      if alive(string.match(who, '^%d+ (.*)$')) then
        plans[#plans + 1] = plan(box(id) .. ':c:' .. who, who)
      end
    end
  end
  local broadcast = #plans > 0
  if not broadcast then
    -- Not broadcast, or nobody receives yet: the message waits for the
    -- first reader.
    plans[1] = plan(b .. ':q', nil)
  end
  local room = true
  for _, p in ipairs(plans) do
    room = room and p.room
  end
  return plans, broadcast, room
end

-- No room for raws: readers too small for the largest of them would wait
-- with it for ever, so they are told now.
local function refuse_small(id, plans, raws)
  local largest = 0
  for _, raw in ipairs(raws) do
    largest = math.max(largest, payload_len(raw))
  end
  for _, p in ipairs(plans) do
    for _, w in ipairs(redis.call('LRANGE', box(id) .. ':w', 0, -1)) do
      local f = lines(w, 5)
      if candidate(f, p.who) and not fits(f[4], tonumber(f[5]), largest) then
        too_small(id, w, largest)
      end
    end
  end
end

-- Carries out plans_for's plans: raws are sent.
local function commit(id, plans, raws, broadcast)
  local b = box(id)
  for _, p in ipairs(plans) do
    for _, s in ipairs(p.small) do
      too_small(id, s[1], s[2])
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
end

-- The first blocked sender of mailbox id is done (its messages went in,
-- or were taken): off the list, and its node told (t=sent), unless it is
-- `me`, the send being answered now.
local function sender_done(id, entry, me)
  redis.call('LPOP', box(id) .. ':sw')
  redis.call('DEL', offer_key(id, entry))
  if entry ~= me then
    local f = lines(entry, 3)
    post(f[1], 't', 'sent', 'm', id, 'w', f[2])
  end
end

-- Whether the blocked sender wid of this node went in and has not been
-- told yet (its t=sent is unread in the inbox).
local function went_in(id, wid)
  for _, e in ipairs(redis.call('XRANGE', 'ipcfs:inbox:' .. NODE, '-', '+')) do
    local f = fields(e[2])
    if f.t == 'sent' and f.m == id and f.w == wid then
      return true
    end
  end
  return false
end

-- Lets blocked senders of mailbox id in, first come first, while there is
-- room (a reader took a message or waits, the capacity grew, a receiver
-- left a broadcast mailbox, a sender ahead gave up). Returns whether the
-- blocked sender `me` went in.
local function pump(id, me)
  local sw = box(id) .. ':sw'
  local mine = false
  while true do
    local head = redis.call('LINDEX', sw, 0)
    if not head then
      break
    end
    local raws = redis.call('LRANGE', offer_key(id, head), 0, -1)
    if #raws == 0 or not alive(lines(head, 3)[1]) then
      -- Its node is gone (the reaper drops the rest).
      redis.call('LPOP', sw)
      redis.call('DEL', offer_key(id, head))
    else
      local plans, broadcast, room = plans_for(id, raws)
      if not room then
        refuse_small(id, plans, raws)
        break
      end
      commit(id, plans, raws, broadcast)
      sender_done(id, head, me)
      mine = mine or head == me
    end
  end
  return mine
end

-- Messages that did not reach their reader: to the next waiting readers,
-- else to the head of the queue, in order. Dropped if the mailbox is gone,
-- and broadcast copies (c = "PID NODE") if their receiver closed.
local function restore(id, raws, c)
  if redis.call('EXISTS', box(id)) == 0 then
    return
  end
  local q, who = box(id) .. ':q', nil
  if c and c ~= '' then
    if redis.call('HEXISTS', box(id) .. ':r', c) == 0 then
      return
    end
    q, who = copies(id, c), c
  end
  local i = 1
  if redis.call('LLEN', q) == 0 then
    while i <= #raws do
      local w = take_waiter(id, payload_len(raws[i]), who)
      if not w then
        break
      end
      deliver(id, w, {raws[i]}, c)
      i = i + 1
    end
  end
  for j = #raws, i, -1 do
    redis.call('LPUSH', q, raws[j])
  end
end

-- The messages an inbox entry (deliver or flight) carries.
local function carried(f)
  local raws = {}
  for i = 1, tonumber(f.n) do
    raws[i] = f['b' .. i]
  end
  return raws
end

-- A receive's messages (flight entry f) go back: no longer received.
local function untake(f)
  if f.t == 'flight' and redis.call('EXISTS', box(f.m)) == 1 then
    redis.call('HINCRBY', box(f.m), 'received', -tonumber(f.n))
  end
end

-- Everything a dead (or departing) node held: messages in flight to it go
-- back, its waiting readers, blocked senders, holds and receivers go.
local function reap(node)
  local inbox = 'ipcfs:inbox:' .. node
  -- Newest first, each to the head: the oldest ends up in front.
  for _, stream in ipairs({inbox, 'ipcfs:flight:' .. node}) do
    for _, e in ipairs(redis.call('XREVRANGE', stream, '+', '-')) do
      local f = fields(e[2])
      if f.t == 'deliver' or f.t == 'flight' then
        untake(f)
        restore(f.m, carried(f), f.c)
      end
    end
    redis.call('DEL', stream)
  end
  local suffix = ' ' .. node
  for _, id in ipairs(redis.call('SMEMBERS', 'ipcfs:seen:' .. node)) do
    local b = box(id)
    for _, k in ipairs({b .. ':w', b .. ':sw'}) do
      for _, e in ipairs(redis.call('LRANGE', k, 0, -1)) do
        if lines(e, 2)[1] == node then
          redis.call('LREM', k, 0, e)
          if k == b .. ':sw' then
            redis.call('DEL', offer_key(id, e))
          end
        end
      end
    end
    -- A blocked sender of another node may be first now.
    pump(id)
    for _, m in ipairs(redis.call('ZRANGE', b .. ':op', 0, -1)) do
      if lines(m, 2)[1] == node then
        redis.call('ZREM', b .. ':op', m)
      end
    end
    for _, k in ipairs({b .. ':h', b .. ':r', b .. ':rs'}) do
      for _, who in ipairs(redis.call('HKEYS', k)) do
        if string.sub(who, -#suffix) == suffix then
          redis.call('HDEL', k, who)
          redis.call('DEL', copies(id, who))
        end
      end
    end
  end
  redis.call('DEL', 'ipcfs:seen:' .. node)
  redis.call('SREM', 'ipcfs:nodes', node)
end

-- The stream and entry id of a flight id: `F…` is a direct receive's
-- record (ipcfs:flight:NODE, which no pump reads), else a delivery in the
-- node's inbox.
local function flight_entry(fid)
  if string.sub(fid, 1, 1) == 'F' then
    return 'ipcfs:flight:' .. NODE, string.sub(fid, 2)
  end
  return 'ipcfs:inbox:' .. NODE, fid
end

-- Messages of flight fid reached their reader: receipts go to the
-- senders that asked for one, naming the reading pid and this node.
local function ack(fid)
  local inbox, eid = flight_entry(fid)
  local e = redis.call('XRANGE', inbox, eid, eid)[1]
  if not e then
    return 0
  end
  local f = fields(e[2])
  for _, raw in ipairs(carried(f)) do
    local parts = lines(raw, 3)
    -- A broadcast message's receipt names the first process that took a
    -- copy: its mark is taken by the first ack.
    local first = true
    if parts[2] ~= '' and f.c and f.c ~= '' then
      first = redis.call('HDEL', box(f.m) .. ':bt', parts[1] .. ' ' .. parts[2]) == 1
    end
    if parts[2] ~= '' and first then
      post(parts[1], 't', 'receipt', 'tag', parts[2], 'pid', f.p, 'node', NODE)
    end
  end
  -- What a receive took directly was counted then (receive.lua).
  if f.t == 'deliver' and redis.call('EXISTS', box(f.m)) == 1 then
    redis.call('HINCRBY', box(f.m), 'received', tonumber(f.n))
  end
  redis.call('XDEL', inbox, eid)
  return 1
end

-- An open of a mailbox, as {m:ID}:op keeps it (scored by its number).
local function opener(node, pid, role, n)
  return node .. '\n' .. pid .. '\n' .. role .. '\n' .. n
end

-- The opens of mailbox id still open, earliest first: {node, pid, role,
-- who = "PID NODE"}.
local function openers(id)
  local out = {}
  for _, m in ipairs(redis.call('ZRANGE', box(id) .. ':op', 0, -1)) do
    local f = lines(m, 4)
    out[#out + 1] = {node = f[1], pid = f[2], role = f[3], who = f[2] .. ' ' .. f[1]}
  end
  return out
end

-- Admits process who ("PID NODE") in role (r|s) on mailbox id under its
-- rule, as a local mount's opens, reads and writes do, or fails EBUSY: a
-- free slot is claimed (pair: either role; exclusive: receiving, its
-- count the process's recv opens). Holds of nodes whose lease ran out
-- count for nothing (the reaper removes them anyway). rule: the
-- mailbox's, if the caller read it already.
local function admit(id, who, role, rule)
  local b = box(id)
  rule = rule or redis.call('HGET', b, 'rule')
  if rule ~= 'pair' and not (rule == 'exclusive' and role == 'r') then
    return
  end
  local hk = b .. ':h'
  local others = 0
  for _, h in ipairs(redis.call('HKEYS', hk)) do
    local node = string.match(h, '^%d+ (.*)$')
    if node and not alive(node) then
      redis.call('HDEL', hk, h)
    elseif h == who then
      return
    else
      others = others + 1
    end
  end
  if rule == 'pair' then
    if others >= 2 then
      fail('EBUSY pair: both places taken')
    end
    redis.call('HSET', hk, who, 1)
  else
    if others >= 1 then
      fail('EBUSY exclusive: another process receives')
    end
    redis.call('HSET', hk, who, redis.call('HGET', b .. ':r', who) or 0)
  end
end

-- Mailbox id, or EIDRM.
local function existing(id)
  local b = box(id)
  if redis.call('EXISTS', b) == 0 then
    fail('EIDRM the mailbox was removed')
  end
  return b
end

