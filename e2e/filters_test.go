package e2e

import "time"

// The example filters' configuration formats and observable effects.

// addHeader configures add-header to add one response header.
func addHeader(name, value string) map[string]any {
	return map[string]any{"header": name, "value": value}
}

// chainLink configures add-header to add a response header and to append
// value to the request header x-chain, which the upstream echoes back as
// x-echo-x-chain: the filters' request-path order.
func chainLink(value string) map[string]any {
	return map[string]any{"header": "x-order", "value": value, "requestHeader": "x-chain", "requestValue": value}
}

// configEchoHeader is the response header config-echo puts its plugin
// configuration in, byte for byte.
const configEchoHeader = "x-plugin-config"

// rateLimit configures rate-limit with a bucket of capacity requests that
// refills at capacity per window.
func rateLimit(capacity int, window time.Duration) map[string]any {
	return map[string]any{"requestsPerWindow": capacity, "windowSeconds": window.Seconds()}
}

// rateLimitBody is what rate-limit answers over the limit, with 403.
const rateLimitBody = "rate limited\n"

// loggerLine is what header-logger logs for the suite's requests.
const loggerLine = "user-agent: wasmxds-e2e"
