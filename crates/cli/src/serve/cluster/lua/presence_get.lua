-- The clients present in a channel, after removing those whose presence
-- expired (a node that crashed never removes its clients itself).
--
-- KEYS[1] ZSET (client -> expiry), KEYS[2] HASH (client -> info).
-- Returns {client, info, client, info, ...}.
local now = tonumber(redis.call("time")[1])
local gone = redis.call("zrangebyscore", KEYS[1], "-inf", now)
for _, client in ipairs(gone) do
  redis.call("hdel", KEYS[2], client)
end
if #gone > 0 then
  redis.call("zremrangebyscore", KEYS[1], "-inf", now)
end
return redis.call("hgetall", KEYS[2])
