-- ARGV: 3 id, 4 wid. The blocked sender gave up.
fence()
redis.call('LREM', box(ARGV[3]) .. ':sw', 0, NODE .. '\n' .. ARGV[4])
return 1
