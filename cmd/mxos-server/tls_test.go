package main

import (
	"net"
	"strings"
	"testing"
)

func TestCheckListen(t *testing.T) {
	plain, withTLS, proxied := tlsOptions{}, tlsOptions{cert: "c.pem", key: "k.pem"}, tlsOptions{insecureHTTP: true}
	cases := []struct {
		opts   tlsOptions
		listen string
		want   string // "" for accepted
	}{
		{plain, "127.0.0.1:8080", ""},
		{plain, "127.0.0.2:8080", ""},
		{plain, "[::1]:8080", ""},
		{plain, "localhost:8080", ""},
		{plain, "0.0.0.0:8080", "refusing plain HTTP on 0.0.0.0:8080"},
		{plain, "[::]:8080", "refusing plain HTTP"},
		{plain, ":8080", "refusing plain HTTP"},
		{plain, "192.168.1.10:8080", "refusing plain HTTP"},
		{plain, "updates.example.mx:8080", ""}, // judged on the bound address
		{plain, "no-port", "--listen"},
		{withTLS, "0.0.0.0:8443", ""},
		{proxied, "0.0.0.0:8080", ""},
		{tlsOptions{cert: "c.pem"}, "127.0.0.1:8443", "go together"},
		{tlsOptions{key: "k.pem"}, "127.0.0.1:8443", "go together"},
	}
	for _, tc := range cases {
		err := tc.opts.checkListen(tc.listen)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v %s: %v, want %q", tc.opts, tc.listen, err, tc.want)
		}
	}
	if err := plain.checkBound(&net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 80}); err == nil {
		t.Error("plain HTTP bound to 10.0.0.1 accepted")
	}
	if err := plain.checkBound(&net.TCPAddr{IP: net.IPv6loopback, Port: 80}); err != nil {
		t.Errorf("loopback: %v", err)
	}
	if _, err := withTLS.serverTLS(); err == nil || !strings.Contains(err.Error(), "TLS certificate") {
		t.Errorf("missing certificate files: %v", err)
	}
}
