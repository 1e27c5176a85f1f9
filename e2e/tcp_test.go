package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// startEchoServer starts a TCP server that sends back every byte it gets;
// it stops, and its goroutines end, when the test does.
func startEchoServer(t *testing.T) string {
	t.Helper()
	return serveTCP(t, func(c net.Conn, _ func(net.Conn) bool) { io.Copy(c, c) })
}

// serveTCP accepts connections on a loopback port until the test ends,
// each handled by handle on a goroutine of its own, and returns the
// address. When the test ends it closes the listener, every connection
// accepted and every one handle passed to keep, and waits for the
// handlers. keep reports false, having closed the connection, once the
// test is ending.
func serveTCP(t *testing.T, handle func(c net.Conn, keep func(net.Conn) bool)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	closed := false
	keep := func(c net.Conn) bool {
		mu.Lock()
		defer mu.Unlock()
		if closed {
			c.Close()
			return false
		}
		conns = append(conns, c)
		return true
	}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil || !keep(c) {
				return
			}
			wg.Go(func() { handle(c, keep) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		closed = true
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// echoLine sends line through 127.0.0.1:port and returns the first line
// that comes back.
func echoLine(port int, line string) (string, error) {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return "", err
	}
	if _, err := io.WriteString(c, line); err != nil {
		return "", err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return got, err
	}
	return got, nil
}

// TestTCPEchoThroughNetworkWasmFilter runs a TCP listener in real Envoy
// with a NETWORK WasmPlugin (tcp-prefix, delivered over ECDS like HTTP
// plugins): bytes to and from an echo server each pass the filter, and
// status shows the plugin running on the node. A pluginConfig edit reaches
// the filter on new connections.
func TestTCPEchoThroughNetworkWasmFilter(t *testing.T) {
	requireFull(t)
	t.Parallel()
	const app = "tcp-echo"
	port := freePort(t)
	echo := startEchoServer(t)
	plugin := func(up string) string {
		return doc("WasmPlugin", "tcp-prefix", map[string]any{
			"selector":     map[string]any{"matchLabels": map[string]any{"app": app}},
			"url":          "file://" + filterPath("tcp-prefix"),
			"type":         "NETWORK",
			"pluginConfig": map[string]any{"downstreamPrefix": "> ", "upstreamPrefix": up},
		})
	}
	srv := startServerWith(t, serverOptions{}, func(s *server) {
		s.writeSpec("tcp.yaml", docs(doc("Listener", "echo", map[string]any{
			"selector": map[string]any{"matchLabels": map[string]any{"app": app}},
			"port":     port,
			"protocol": "TCP",
			"cluster":  "echo",
		}), clusterSpec("echo", echo)))
		s.writeSpec("plugin.yaml", plugin("< "))
	})
	startEnvoy(t, srv, app+"-node", map[string]string{"app": app})
	expect := func(want string) func() error {
		return func() error {
			got, err := echoLine(port, "hello\n")
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("echo through Envoy: got %q, want %q", got, want)
			}
			return nil
		}
	}
	eventually(t, applyTimeout, steady(steadyReplies, expect("< > hello\n")))
	waitRunning(t, srv, app+"-node", "tcp-prefix")

	srv.writeSpec("plugin.yaml", plugin("<< "))
	eventually(t, applyTimeout, steady(steadyReplies, expect("<< > hello\n")))
}
