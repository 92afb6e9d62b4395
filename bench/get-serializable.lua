-- raftexample: serializable (local) GET /bench-<random n>?consistency=serializable.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local tail
function init(args)
	bench_init(args)
	tail = "?consistency=serializable HTTP/1.1\r\nHost: " .. wrk.headers["Host"] .. "\r\n\r\n"
end

function request()
	return "GET /" .. random_key() .. tail
end
