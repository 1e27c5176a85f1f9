package e2e

import "time"

// The example filters' configuration formats and observable effects.

// addHeader configures add-header to add one response header.
func addHeader(name, value string) map[string]any {
	return map[string]any{"header": name, "value": value}
}

// configEchoHeader is the response header config-echo puts its plugin
// configuration in.
const configEchoHeader = "x-plugin-config"

// rateLimit configures rate-limit with a bucket of capacity requests that
// refills completely every window.
func rateLimit(capacity int, window time.Duration) map[string]any {
	return map[string]any{"requests_per_window": capacity, "window_seconds": int(window / time.Second)}
}

// rateLimitBody is what rate-limit answers over the limit, with 403.
const rateLimitBody = "rate limited"
