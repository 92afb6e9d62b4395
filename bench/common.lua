-- Shared by the wrk scripts in this directory (loaded with dofile; see
-- bench/run.sh). Script arguments after "--": key space, value bytes.
--
-- Keys are "bench-<n>" with n uniform in [0, keys); bench/benchtool load
-- writes exactly these keys before the GET runs, so GETs hit.

-- setup runs in wrk's main Lua state, once per thread: number the threads so
-- that each seeds its random generator differently.
local nthreads = 0
function setup(thread)
	nthreads = nthreads + 1
	thread:set("tid", nthreads)
end

keys = 100000
value_bytes = 256

-- bench_init reads the script arguments and seeds this thread's generator.
function bench_init(args)
	keys = tonumber(args[1]) or keys
	value_bytes = tonumber(args[2]) or value_bytes
	math.randomseed(os.time() * 1000 + (tid or 0) * 7919)
	-- LuaJIT's first draws after seeding are poorly mixed; discard some.
	for _ = 1, 10 do math.random() end
end

function random_key()
	return "bench-" .. math.random(0, keys - 1)
end

-- random_value returns n random printable ASCII bytes.
function random_value(n)
	local t = {}
	for i = 1, n do t[i] = string.char(math.random(33, 126)) end
	return table.concat(t)
end

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local b64 = {}
for i = 1, 64 do b64[i - 1] = b64chars:sub(i, i) end

-- base64 is standard base64 with padding, as etcd's JSON gateway expects for
-- bytes fields.
function base64(s)
	local out = {}
	for i = 1, #s, 3 do
		local a, b, c = s:byte(i, i + 2)
		local n = a * 65536 + (b or 0) * 256 + (c or 0)
		local c1 = math.floor(n / 262144) % 64
		local c2 = math.floor(n / 4096) % 64
		local c3 = math.floor(n / 64) % 64
		local c4 = n % 64
		out[#out + 1] = b64[c1] .. b64[c2] .. (b and b64[c3] or "=") .. (c and b64[c4] or "=")
	end
	return table.concat(out)
end

-- done prints one machine-readable line that bench/run.sh parses.
-- non2xx is wrk's count of responses with status >= 400 (no 3xx is expected
-- here); socket errors are connect, read, write and timeout errors.
function done(summary, latency, requests)
	local e = summary.errors
	io.write(string.format(
		"BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d non2xx=%d socket_errors=%d connect=%d read=%d write=%d timeout=%d\n",
		summary.requests, summary.duration,
		latency:percentile(50), latency:percentile(99), latency.max,
		e.status, e.connect + e.read + e.write + e.timeout,
		e.connect, e.read, e.write, e.timeout))
end
