-- ARGV: 3 id. {messages, bytes, receivers, receivers waiting, senders
-- waiting, sent, received, dropped, truncated, holder...}
fence()
local b = existing(ARGV[3])
-- Queued messages: the shared queue and every broadcast copy.
local n, bytes = 0, 0
local function count(k)
  for _, r in ipairs(redis.call('LRANGE', k, 0, -1)) do
    n = n + 1
    bytes = bytes + payload_len(r)
  end
end
count(b .. ':q')
for _, who in ipairs(redis.call('HKEYS', b .. ':r')) do
  count(copies(ARGV[3], who))
end
local c = redis.call('HMGET', b, 'sent', 'received', 'dropped', 'truncated')
local out = {n, bytes, redis.call('HLEN', b .. ':r'), redis.call('LLEN', b .. ':w'),
  redis.call('LLEN', b .. ':sw'), tonumber(c[1] or 0), tonumber(c[2] or 0),
  tonumber(c[3] or 0), tonumber(c[4] or 0)}
for _, who in ipairs(redis.call('HKEYS', b .. ':h')) do
  out[#out + 1] = who
end
return out
