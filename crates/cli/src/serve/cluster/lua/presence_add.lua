-- Add or refresh a client's presence in a channel until now + TTL (Redis's
-- clock, so nodes' clocks do not matter).
--
-- KEYS[1] ZSET (client -> expiry), KEYS[2] HASH (client -> info).
-- ARGV[1] client, ARGV[2] info, ARGV[3] TTL (s).
local ttl = tonumber(ARGV[3])
local now = tonumber(redis.call("time")[1])
redis.call("zadd", KEYS[1], now + ttl, ARGV[1])
redis.call("hset", KEYS[2], ARGV[1], ARGV[2])
redis.call("expire", KEYS[1], ttl)
redis.call("expire", KEYS[2], ttl)
return 1
