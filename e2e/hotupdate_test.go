package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// convergeGoal is how soon an edit should show in traffic. It is recorded
// and reported, not asserted: timing depends on the machine.
const convergeGoal = 2 * time.Second

// TestHotUpdateUnderLoad edits a plugin's config and then its tag while two
// clients send a steady stream of requests, once per filter delivery mode.
// No request may fail; every request after the edit must show the new
// behaviour once it has shown. It runs alone (not parallel) so the timings
// it records are not skewed by the other scenarios.
func TestHotUpdateUnderLoad(t *testing.T) {
	requireFull(t)
	for _, mode := range []string{"lds", "ecds"} {
		t.Run(mode, func(t *testing.T) { hotUpdate(t, mode) })
	}
}

func hotUpdate(t *testing.T, mode string) {
	p := plugin{name: "hot", app: "hot-" + mode, url: oci(refHotV1), config: addHeader("x-hot", "one")}
	f := newSingle(t, serverOptions{delivery: mode}, "hot-"+mode, map[string]string{pluginFile: p.spec()})
	f.waitFor(t, expectHeader(f.port, "x-hot", "one"))

	l := startLoad(t, f.port)
	defer l.stop()
	results := []string{fmt.Sprintf("filter delivery: %s, Envoy --concurrency %d", mode, envoyConcurrency)}

	p.config = addHeader("x-hot", "two")
	results = append(results, l.step(t, f, "new pluginConfig", p.spec(), func(r reply) bool {
		return r.header.Get("x-hot") == "two"
	}))

	p.url = oci(refHotV2) // config-echo behind a new tag
	p.config = map[string]any{"hot": "v2"}
	results = append(results, l.step(t, f, "new tag", p.spec(), func(r reply) bool {
		return r.header.Get("x-hot") == "" && r.header.Get(configEchoHeader) == `{"hot":"v2"}`
	}))
	writeResults(t, "hot-update-"+mode, results)
}

// load is a steady stream of requests from two clients: one that keeps its
// connection (and may not retry: POST with a body), one that opens a new
// connection per request.
type load struct {
	port    int
	done    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	samples map[string][]sample
}

type sample struct {
	at  time.Time
	r   reply
	err error
}

var loadClients = map[string]*http.Client{
	"keep-alive": {Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}},
	"fresh-conn": freshClient,
}

func startLoad(t *testing.T, port int) *load {
	l := &load{port: port, done: make(chan struct{}), samples: map[string][]sample{}}
	for name, c := range loadClients {
		l.wg.Add(1)
		go l.client(name, c)
	}
	return l
}

func (l *load) client(name string, c *http.Client) {
	defer l.wg.Done()
	method := http.MethodGet
	if name == "keep-alive" {
		method = http.MethodPost
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-tick.C:
		}
		r, err := doBody(c, method, l.port)
		l.mu.Lock()
		l.samples[name] = append(l.samples[name], sample{at: time.Now(), r: r, err: err})
		l.mu.Unlock()
	}
}

func doBody(c *http.Client, method string, port int) (reply, error) {
	if method == http.MethodGet {
		return do(c, method, port, "/")
	}
	req, err := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d/", port), strings.NewReader("ping"))
	if err != nil {
		return reply{}, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: string(b)}, err
}

func (l *load) stop() {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	l.wg.Wait()
}

// step applies an edit and waits until each client has seen the new
// behaviour on 50 consecutive requests. It fails the test on any failed
// request and returns a line for the results file.
func (l *load) step(t *testing.T, f *single, what, spec string, isNew func(reply) bool) string {
	t.Helper()
	from, edit, err := l.applyEdit(f, spec, 50, "the new behaviour", isNew)
	line := what + ":"
	for _, name := range []string{"fresh-conn", "keep-alive"} {
		c := l.summary(name, from[name], edit, isNew)
		line += " " + c.String(name)
		for _, e := range c.failures {
			t.Errorf("%s, %s client: failed request: %s", what, name, e)
		}
	}
	t.Log(line)
	if err != nil {
		t.Errorf("%s: new behaviour did not settle: %v\nEnvoy's Wasm stats:\n%s", what, err, f.envoy.wasmStats())
	}
	return line
}

// applyEdit writes spec as the plugin file and waits until every load
// client has seen isNew (described as shows) on n consecutive requests. It
// returns where each client's samples began, when the edit was written and
// the wait's error.
func (l *load) applyEdit(f *single, spec string, n int, shows string, isNew func(reply) bool) (map[string]int, time.Time, error) {
	l.mu.Lock()
	from := map[string]int{}
	for name := range loadClients {
		from[name] = len(l.samples[name])
	}
	l.mu.Unlock()
	edit := time.Now()
	f.srv.writeSpec(pluginFile, spec)
	err := poll(applyTimeout, func() error {
		if err := f.srv.proc.Alive(); err != nil {
			return err
		}
		for name := range loadClients {
			if c := l.summary(name, from[name], edit, isNew); c.consecutiveNew < n {
				return fmt.Errorf("%s: %d consecutive requests show %s; last reply: %d %v",
					name, c.consecutiveNew, shows, c.last.status, c.last.header)
			}
		}
		return nil
	})
	return from, edit, err
}

type convergence struct {
	requests       int
	failures       []string
	converged      time.Duration // from the edit to the first of the final run of new replies
	consecutiveNew int
	last           reply
}

func (c convergence) String(client string) string {
	conv := "not converged"
	if c.consecutiveNew > 0 {
		conv = c.converged.Round(time.Millisecond).String()
		if c.converged > convergeGoal {
			conv += " (over the " + convergeGoal.String() + " goal)"
		}
	}
	return fmt.Sprintf("[%s: %d requests, %d failed, converged after %s]", client, c.requests, len(c.failures), conv)
}

func (l *load) summary(name string, from int, edit time.Time, isNew func(reply) bool) convergence {
	l.mu.Lock()
	s := append([]sample(nil), l.samples[name][from:]...)
	l.mu.Unlock()
	c := convergence{requests: len(s)}
	for _, x := range s {
		switch {
		case x.err != nil:
			c.failures = append(c.failures, fmt.Sprintf("%s: %v", x.at.Format("15:04:05.000"), x.err))
		case x.r.status != http.StatusOK:
			c.failures = append(c.failures, fmt.Sprintf("%s: status %d", x.at.Format("15:04:05.000"), x.r.status))
		}
		c.last = x.r
		if x.err == nil && x.r.status == http.StatusOK && isNew(x.r) {
			if c.consecutiveNew == 0 {
				c.converged = x.at.Sub(edit)
			}
			c.consecutiveNew++
		} else {
			c.consecutiveNew = 0
		}
	}
	return c
}

// writeResults records measurements in e2e/results/<name>.txt, next to this
// package, for a person comparing runs.
func writeResults(t *testing.T, name string, lines []string) {
	dir := filepath.Join(repoRoot(), "e2e", "results")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Errorf("results: %v", err)
		return
	}
	body := fmt.Sprintf("%s\n%s\n", time.Now().UTC().Format(time.RFC3339), strings.Join(lines, "\n"))
	if err := os.WriteFile(filepath.Join(dir, name+".txt"), []byte(body), 0o644); err != nil {
		t.Errorf("results: %v", err)
	}
}
