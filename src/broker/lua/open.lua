-- ARGV: 3 id, 4 pid, 5 role (s|r). Admits the process under the rule:
-- exclusive holds recv for one process, pair binds the first two.
-- Returns the open's number, in the order of every open of the mailbox
-- (close gives it back): whom a rule written later binds.
fence()
local id, role = ARGV[3], ARGV[5]
local b = existing(id)
local me = ARGV[4] .. ' ' .. NODE
admit(id, me, role)
if role == 'r' and redis.call('HGET', b, 'rule') == 'exclusive' then
  redis.call('HINCRBY', b .. ':h', me, 1)
end
if role == 'r' then
  redis.call('HINCRBY', b .. ':r', me, 1)
  -- broadcast: a new receiver's empty queue may be the room a blocked
  -- sender waits for.
  pump(id)
end
redis.call('SADD', 'ipcfs:seen:' .. NODE, id)
local n = redis.call('HINCRBY', b, 'opens', 1)
redis.call('ZADD', b .. ':op', n, opener(NODE, ARGV[4], role, n))
if role == 'r' then
  -- Since when the process receives (kept while it has recv open): an
  -- exclusive hold passes to the earliest (close.lua).
  redis.call('HSETNX', b .. ':rs', me, n)
end
return n
