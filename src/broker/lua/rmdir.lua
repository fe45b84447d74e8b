-- ARGV: 3 parent, 4 name. Removes a mailbox without children, its queue
-- with it; every node's calls on it end. Returns its id.
fence()
local path = ARGV[3] .. '/' .. ARGV[4]
local id = redis.call('HGET', 'ipcfs:names', path)
if not id then
  fail('ENOENT no such mailbox')
end
local b = box(id)
if tonumber(redis.call('HGET', b, 'kids') or '0') > 0 then
  fail('ENOTEMPTY the mailbox has child mailboxes')
end
for _, e in ipairs(redis.call('LRANGE', b .. ':sw', 0, -1)) do
  redis.call('DEL', offer_key(id, e))
end
for _, who in ipairs(redis.call('HKEYS', b .. ':r')) do
  redis.call('DEL', copies(id, who))
end
redis.call('DEL', b, b .. ':q', b .. ':bt', b .. ':w', b .. ':sw', b .. ':h', b .. ':r', b .. ':rs', b .. ':op')
redis.call('HDEL', 'ipcfs:names', path)
redis.call('SREM', 'ipcfs:boxes', id)
if ARGV[3] ~= '0' then
  redis.call('HINCRBY', box(ARGV[3]), 'kids', -1)
end
everyone('t', 'removed', 'm', id)
everyone('t', 'tree')
return tonumber(id)
