-- raftexample: conditional PUT /bench-<n> with If-Match: "<modRevision>",
-- the key's modRevision as listed just before the run, and a random value
-- (one per thread). Script arguments after "--": key space, value bytes,
-- wrk threads, the file of "key modRevision" lines (bench/benchtool revs).
--
-- Thread t of T takes the keys at lines t, t+T, t+2T, ... in turn, so no two
-- connections race for a key and each condition holds: a PUT answers 412
-- only once its thread comes back to a key it wrote in this run (its
-- modRevision has moved on), i.e. when the run writes more PUTs than there
-- are keys. The condition is checked where plain PUT does nothing more: the
-- header is parsed, carried in the command, compared when it is applied.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local tail
local mine, n, pos = {}, 0, 0
function init(args)
	bench_init(args)
	local threads = tonumber(args[3]) or 1
	local file = args[4] or error("put-if.lua: the revisions file is the 4th script argument")
	local i = 0
	for line in io.lines(file) do
		if i % threads == (tid or 1) - 1 then
			local k, r = line:match("^(%S+) (%d+)$")
			n = n + 1
			mine[n] = "PUT /" .. k .. " HTTP/1.1\r\nIf-Match: \"" .. r .. "\""
		end
		i = i + 1
	end
	if n == 0 then error("put-if.lua: no keys for thread " .. tostring(tid)) end
	tail = "\r\nHost: " .. wrk.headers["Host"] .. "\r\nContent-Length: " ..
		value_bytes .. "\r\n\r\n" .. random_value(value_bytes)
end

function request()
	pos = pos % n + 1
	return mine[pos] .. tail
end
