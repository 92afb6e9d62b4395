-- etcd's HTTP/JSON gateway: linearizable POST /v3/kv/range {"key": b64}.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local head
function init(args)
	bench_init(args)
	head = "POST /v3/kv/range HTTP/1.1\r\nHost: " .. wrk.headers["Host"] ..
		"\r\nContent-Type: application/json\r\nContent-Length: "
end

function request()
	local body = '{"key":"' .. base64(random_key()) .. '"}'
	return head .. #body .. "\r\n\r\n" .. body
end
