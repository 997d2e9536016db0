package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// TLS on the listener. Decisions:
//   - --tls-cert and --tls-key (PEM; the certificate file may hold the
//     chain) turn on HTTPS for everything the server serves: API,
//     repository, metadata, registry, metrics. TLS 1.2 is the minimum.
//   - Without them the server listens only on a loopback address, unless
//     --insecure-http says a TLS-terminating proxy (nginx, see deploy/)
//     is in front: tokens must never cross a school network in clear text.
//     The check is on the --listen address before anything is opened
//     (an empty host or 0.0.0.0 is every interface) and again on the
//     address actually bound (a host name).
//   - The files are read at start (a bad pair is a startup error) and read
//     again when they change, checked at most once a minute, so a renewed
//     certificate is picked up without a restart.

// tlsOptions are the TLS flags.
type tlsOptions struct {
	cert, key    string
	insecureHTTP bool
}

func (o tlsOptions) enabled() bool { return o.cert != "" || o.key != "" }

// checkListen refuses plain HTTP on a non-loopback --listen address.
func (o tlsOptions) checkListen(listen string) error {
	if o.cert == "" && o.key != "" || o.cert != "" && o.key == "" {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if o.enabled() || o.insecureHTTP {
		return nil
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", listen, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	if ip := net.ParseIP(host); host == "" || ip != nil {
		return plainHTTPError(listen)
	}
	return nil // a host name: checkBound judges the address it resolves to
}

// checkBound is checkListen on the address actually bound.
func (o tlsOptions) checkBound(addr net.Addr) error {
	if o.enabled() || o.insecureHTTP {
		return nil
	}
	if tcp, ok := addr.(*net.TCPAddr); ok && tcp.IP.IsLoopback() {
		return nil
	}
	return plainHTTPError(addr.String())
}

func plainHTTPError(addr string) error {
	return fmt.Errorf("refusing plain HTTP on %s, which is not a loopback address: tokens would cross the network in clear text; "+
		"give --tls-cert and --tls-key, or --insecure-http when a TLS-terminating proxy is in front (see README, TLS)", addr)
}

// certReloadEvery is how often the certificate files are checked for a change.
const certReloadEvery = time.Minute

// certLoader serves the certificate pair, reloading it when the files change.
type certLoader struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	mtimes  [2]time.Time
	checked time.Time
}

func newCertLoader(certFile, keyFile string) (*certLoader, error) {
	l := &certLoader{certFile: certFile, keyFile: keyFile}
	if err := l.load(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *certLoader) stat() ([2]time.Time, error) {
	var m [2]time.Time
	for i, f := range []string{l.certFile, l.keyFile} {
		st, err := os.Stat(f)
		if err != nil {
			return m, err
		}
		m[i] = st.ModTime()
	}
	return m, nil
}

func (l *certLoader) load() error {
	m, err := l.stat()
	if err != nil {
		return fmt.Errorf("TLS certificate: %w", err)
	}
	c, err := tls.LoadX509KeyPair(l.certFile, l.keyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate (--tls-cert %s, --tls-key %s): %w", l.certFile, l.keyFile, err)
	}
	l.cert, l.mtimes, l.checked = &c, m, time.Now()
	return nil
}

// get is tls.Config.GetCertificate. A pair that fails to load after a
// change is ignored (the old one keeps serving) until it loads.
func (l *certLoader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.checked) >= certReloadEvery {
		l.checked = time.Now()
		if m, err := l.stat(); err == nil && m != l.mtimes {
			_ = l.load()
		}
	}
	return l.cert, nil
}

// serverTLS is the listener's TLS configuration.
func (o tlsOptions) serverTLS() (*tls.Config, error) {
	l, err := newCertLoader(o.cert, o.key)
	if err != nil {
		return nil, err
	}
	return &tls.Config{GetCertificate: l.get, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}, nil
}
