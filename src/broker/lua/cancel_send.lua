-- ARGV: 3 id, 4 wid. The blocked sender gave up: {'cancelled'} if its
-- messages were still waiting (they are dropped), {'sent'} if they went
-- in already (a t=sent is on its way to this node), {'gone'} if the
-- broker does not know it (a restart without persistence).
fence()
local id, wid = ARGV[3], ARGV[4]
local k, prefix = box(id) .. ':sw', NODE .. '\n' .. wid .. '\n'
for _, e in ipairs(redis.call('LRANGE', k, 0, -1)) do
  if string.sub(e, 1, #prefix) == prefix then
    redis.call('LREM', k, 0, e)
    redis.call('DEL', offer_key(id, e))
    -- The senders behind it may fit where it did not.
    pump(id)
    return 'cancelled'
  end
end
if went_in(id, wid) then
  return 'sent'
end
return 'gone'
