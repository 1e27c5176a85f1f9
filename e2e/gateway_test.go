package e2e

import (
	"fmt"
	"io"
	"net/http"
	"testing"
)

// hostRequest is one request through Envoy with a Host header of its own.
type hostRequest struct {
	host    string
	path    string
	headers map[string]string
}

// getHost sends the request to 127.0.0.1:port with the request's Host.
func getHost(port int, r hostRequest) (reply, error) {
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", port, r.path), nil)
	if err != nil {
		return reply{}, err
	}
	req.Host = r.host
	for k, v := range r.headers {
		req.Header.Set(k, v)
	}
	resp, err := freshClient.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: string(b)}, nil
}

// expectReply returns a poll func that succeeds once the request gets
// status and body (any body when body is "") and the response header name
// has value want ("" meaning absent; name "" checks no header).
func expectReply(port int, r hostRequest, status int, body, name, want string) func() error {
	return func() error {
		got, err := getHost(port, r)
		if err != nil {
			return err
		}
		if got.status != status || (body != "" && got.body != body) {
			return fmt.Errorf("%s%s: status %d body %q, want %d %q", r.host, r.path, got.status, got.body, status, body)
		}
		if name != "" && got.header.Get(name) != want {
			return fmt.Errorf("%s%s: header %s = %q, want %q", r.host, r.path, name, got.header.Get(name), want)
		}
		return nil
	}
}

// gatewaySpecs is a listener on port whose routes are grouped by host:
// api.example.com (with or without a port) sends /v1 with x-env: canary to
// the canary upstream and the rest to the api upstream; no other host is
// served. The plugin adds x-admin only on /admin of api.example.com.
func gatewaySpecs(app string, port int, api, canary string) string {
	route := func(prefix, cluster string, headers ...map[string]any) map[string]any {
		m := map[string]any{"prefix": prefix}
		if len(headers) > 0 {
			m["headers"] = headers
		}
		return map[string]any{"match": m, "cluster": cluster, "timeout": "10s"}
	}
	listener := doc("Listener", "gateway", map[string]any{
		"selector": map[string]any{"matchLabels": map[string]any{"app": app}},
		"port":     port,
		"hosts": []any{map[string]any{
			"domains": []any{"api.example.com", "api.example.com:*"},
			"routes": []any{
				route("/v1", "canary", map[string]any{"name": "x-env", "exact": "canary"}),
				route("/", "api"),
			},
		}},
	})
	admin := doc("WasmPlugin", "admin-only", map[string]any{
		"selector":     map[string]any{"matchLabels": map[string]any{"app": app}},
		"url":          oci(refAddHeader),
		"pluginConfig": addHeader("x-admin", "checked"),
		"match": []any{map[string]any{
			"hosts": []any{"api.example.com"},
			"paths": []any{map[string]any{"prefix": "/admin"}},
		}},
	})
	return docs(listener, clusterSpec("api", api), clusterSpec("canary", canary), admin)
}

// TestHostsRouteAndPluginsTargetPaths runs a gateway listener in real
// Envoy, with each filter delivery: requests are routed by Host and
// headers, an unknown host gets 404, and a plugin limited to /admin of one
// host acts there and nowhere else.
func TestHostsRouteAndPluginsTargetPaths(t *testing.T) {
	requireFull(t)
	t.Parallel()
	for _, mode := range []string{"ecds", "lds"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			app := "gateway-" + mode
			port := freePort(t)
			api, canary := startNamedUpstream(t, "api\n"), startNamedUpstream(t, "canary\n")
			srv := startServerWith(t, serverOptions{delivery: mode}, func(s *server) {
				s.writeSpec("gateway.yaml", gatewaySpecs(app, port, api, canary))
			})
			startEnvoy(t, srv, app+"-node", map[string]string{"app": app})
			wait := func(check func() error) {
				t.Helper()
				eventually(t, applyTimeout, steady(steadyReplies, check))
			}
			const host = "api.example.com"
			canaryHeader := map[string]string{"x-env": "canary"}
			wait(expectReply(port, hostRequest{host: host, path: "/admin/users"}, 200, "api\n", "x-admin", "checked"))
			wait(expectReply(port, hostRequest{host: host, path: "/"}, 200, "api\n", "x-admin", ""))
			wait(expectReply(port, hostRequest{host: host, path: "/v1/items", headers: canaryHeader}, 200, "canary\n", "x-admin", ""))
			wait(expectReply(port, hostRequest{host: host, path: "/v1/items"}, 200, "api\n", "", ""))
			wait(expectReply(port, hostRequest{host: host + ":8080", path: "/admin"}, 200, "api\n", "x-admin", "checked"))
			wait(expectReply(port, hostRequest{host: "other.example.com", path: "/admin"}, 404, "", "x-admin", ""))
		})
	}
}
