-- raftexample: linearizable GET /bench-<random n>.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local tail
function init(args)
	bench_init(args)
	tail = " HTTP/1.1\r\nHost: " .. wrk.headers["Host"] .. "\r\n\r\n"
end

function request()
	return "GET /" .. random_key() .. tail
end
