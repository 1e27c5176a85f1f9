package filters_test

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// tcpEcho is a TCP server that writes back every line it reads.
func tcpEcho(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return l.Addr().String()
}

// tcpListener is a TCP listener whose network Wasm filter runs before a
// tcp_proxy to cluster "upstream".
func tcpListener(name string, wasmConfig map[string]any) map[string]any {
	return map[string]any{
		"name":    name,
		"address": socketAddress("127.0.0.1", 0),
		"filter_chains": []any{map[string]any{"filters": []any{
			map[string]any{
				"name": "envoy.filters.network.wasm",
				"typed_config": map[string]any{
					"@type":  "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm",
					"config": wasmConfig,
				},
			},
			map[string]any{
				"name": "envoy.filters.network.tcp_proxy",
				"typed_config": map[string]any{
					"@type":       "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
					"stat_prefix": name, "cluster": "upstream",
				},
			},
		}}},
	}
}

// TestTCPPrefixInEnvoy: through a real Envoy to an echo server, the first
// line comes back with both prefixes (each direction passed the filter
// once), later lines unchanged, and a new connection is marked again.
func TestTCPPrefixInEnvoy(t *testing.T) {
	e := startEnvoy(t, bootstrap(t, tcpEcho(t), tcpListener("tcp",
		pluginConfig("tcp-prefix", "tcp-prefix", "tcp-prefix", `{"downstreamPrefix": "> ", "upstreamPrefix": "< "}`, nil))))
	addr := strings.TrimPrefix(e.listeners["tcp"], "http://")
	for conn := range 2 {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		for i, want := range []string{"< > hi\n", "again\n"} {
			in := strings.TrimPrefix(want, "< > ")
			if _, err := io.WriteString(c, in); err != nil {
				t.Fatal(err)
			}
			got, err := r.ReadString('\n')
			if err != nil || got != want {
				t.Errorf("connection %d, line %d: sent %q, got %q (%v), want %q", conn+1, i+1, in, got, err, want)
			}
		}
		c.Close()
	}
}
