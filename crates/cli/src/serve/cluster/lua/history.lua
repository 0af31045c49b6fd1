-- A channel's position and the publications kept after a given offset, read
-- atomically. Starts an epoch if the channel has none, so that a subscriber's
-- position stays valid when the first message is published.
--
-- KEYS[1] stream, KEYS[2] meta hash.
-- ARGV[1] offset after which to read (-1: none), ARGV[2] most entries
-- (0: all), ARGV[3] meta TTL (s), ARGV[4] epoch to start if there is none.
-- Returns {top offset, epoch, {{id, {field, value, ...}}, ...}}.
local stream, meta = KEYS[1], KEYS[2]
local epoch = redis.call("hget", meta, "e")
if not epoch then
  epoch = ARGV[4]
  redis.call("hset", meta, "e", epoch)
  redis.call("del", stream)
end
local top = tonumber(redis.call("hget", meta, "s") or "0")
local meta_ttl = tonumber(ARGV[3])
if meta_ttl > 0 then
  redis.call("expire", meta, meta_ttl)
end
local since = tonumber(ARGV[1])
local entries = {}
-- Only the last `k` offsets count as kept (publish.lua trims approximately).
local keep = tonumber(redis.call("hget", meta, "k") or "-1")
local from = since + 1
if keep >= 0 then
  from = math.max(from, top - keep + 1)
end
if since >= 0 and from <= top then
  local limit = tonumber(ARGV[2])
  if limit > 0 then
    entries = redis.call("xrange", stream, from, "+", "COUNT", limit)
  else
    entries = redis.call("xrange", stream, from, "+")
  end
end
return {top, epoch, entries}
