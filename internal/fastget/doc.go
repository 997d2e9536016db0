// Package fastget owns a minimal HTTP/1.1 connection loop for the
// requests a repository pull is made of: GET and HEAD without a body, on
// a path under one prefix, over plain TCP. Every other connection, and a
// connection from its first request that is not of that kind, is handed
// to net/http unchanged (with the bytes already read), so net/http still
// serves TLS, HTTP/2, request bodies, and every other route.
//
// Why it is hand-written. A stock `ostree pull` asks for thousands of
// small objects, one request each, over a handful of keep-alive
// connections. For each request net/http starts a goroutine that reads
// the connection in the background (a read that fails with EAGAIN, then
// the wake-ups to start and stop it) and wakes idle threads around it;
// measured, a bare net/http handler serving every object from memory used
// 1.7x nginx's CPU per pull, above the 1.5x the serving target allows
// (README, "Performance"). The loop here reads a request, runs the same
// http.Handler the rest of the server runs (routing, metrics and logs
// included), writes the status line, headers and a small body in one
// write(2), and reads the next request on the same goroutine. No
// maintained library fits: fasthttp has its own handler type (our
// handlers and middleware are net/http's) and cannot give a connection
// back to net/http half-way.
//
// With Config.Loops (Linux), connections are not given a goroutine each:
// a few event loops accept them, wait for their requests with epoll, and
// run the handler inline, writing each response straight to the socket.
// The loops wait without handing their P back to the runtime while busy
// (bounded to 2 ms a wait, so a collection still stops them promptly);
// measured, that hand-off was most of what the goroutine-per-connection
// loop spent over nginx's CPU per pull (README, "Performance"). A
// connection whose response would block (a slow reader, a body larger
// than the socket takes), or whose request is not the loop's kind, moves
// to a goroutine of its own and goes on there exactly as without loops
// (loop_linux.go). The price: a loop's handler must not wait on the
// network or on locks held long, or it stalls the loop's other
// connections; the server uses loops only for a repository on local disk,
// as nginx does.
//
// What it parses itself is only the request line; headers are read by
// net/textproto, as net/http reads them, and checked with httpguts as
// net/http checks them. What it refuses, net/http would refuse too: a
// malformed header (400), headers over the limit (431), a missing or
// malformed Host on HTTP/1.1 (400). One difference, on purpose: a GET or
// HEAD under the prefix that announces a body (Content-Length other than
// 0, or Transfer-Encoding) is answered 400 and the connection closed,
// where net/http would read and discard the body; no pull client sends
// one.
package fastget
