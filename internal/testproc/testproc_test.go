package testproc

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the child process, so that these tests need
// no tool besides themselves.
const childEnv = "TESTPROC_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case "serve":
		serveChild()
	case "stubborn":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ignoring SIGTERM")
		select {}
	case "crash":
		fmt.Println("dying on purpose")
		os.Exit(3)
	}
}

// serveChild answers HTTP on $TESTPROC_ADDR and exits cleanly on SIGTERM.
func serveChild() {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	l, err := net.Listen("tcp", os.Getenv("TESTPROC_ADDR"))
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println("listening on", l.Addr())
	go func() { _ = http.Serve(l, http.NotFoundHandler()) }()
	<-term
	fmt.Println("bye")
	os.Exit(0)
}

func startChild(t *testing.T, mode string, env ...string) *Proc {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p, err := Start(mode, filepath.Join(t.TempDir(), mode+".log"), append(env, childEnv+"="+mode), self)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	return p
}

func TestStartWaitAndStop(t *testing.T) {
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	p := startChild(t, "serve", "TESTPROC_ADDR="+addr)
	if err := p.WaitLog("listening on "+addr, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitPort(addr, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitHTTP("http://"+addr+"/", time.Minute, http.StatusNotFound); err != nil {
		t.Fatal(err)
	}
	p.Stop()
	if gone, err := p.Exited(); !gone || err != nil {
		t.Errorf("after Stop: exited %v, %v; want a clean exit on SIGTERM", gone, err)
	}
	if log := Tail(p.LogPath, 10); !strings.HasPrefix(log, "=== ") || !strings.HasSuffix(log, "bye") {
		t.Errorf("log = %q, want the command line first and the child's goodbye last", log)
	}
}

func TestStopKillsWhatIgnoresSIGTERM(t *testing.T) {
	defer func(g time.Duration) { StopGrace = g }(StopGrace)
	StopGrace = 100 * time.Millisecond
	p := startChild(t, "stubborn")
	if err := p.WaitLog("ignoring SIGTERM", time.Minute); err != nil {
		t.Fatal(err)
	}
	p.Stop()
	if gone, err := p.Exited(); !gone || err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("after Stop: exited %v, %v; want killed", gone, err)
	}
}

func TestWaitsGiveUpWhenTheProcessDies(t *testing.T) {
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	p := startChild(t, "crash")
	// A wait that only timed out would report the refused connection.
	err = p.WaitHTTP("http://"+addr+"/", time.Hour)
	if err == nil || !strings.Contains(err.Error(), "crash exited (exit status 3)") || !strings.Contains(err.Error(), "dying on purpose") {
		t.Errorf("wait on a dead process = %v, want its exit and the end of its log", err)
	}
}

// recordingTB catches what DumpOnFailure logs.
type recordingTB struct {
	testing.TB
	failed   bool
	logs     []string
	cleanups []func()
}

func (r *recordingTB) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recordingTB) Failed() bool     { return r.failed }
func (r *recordingTB) Logf(format string, args ...any) {
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}
func (r *recordingTB) runCleanups() {
	for _, f := range r.cleanups {
		f()
	}
}

func TestDumpOnFailureShowsTheLogOnlyOnFailure(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "x.log")
	if err := os.WriteFile(logPath, []byte("first\nthe reason it failed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, failed := range []bool{false, true} {
		rec := &recordingTB{TB: t, failed: failed}
		DumpOnFailure(rec, "x", logPath)
		rec.runCleanups()
		dumped := len(rec.logs) == 1 && strings.Contains(rec.logs[0], "the reason it failed")
		if dumped != failed {
			t.Errorf("failed=%v: logged %q", failed, rec.logs)
		}
	}
}

func TestTailSkipsEnvoyInventory(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "envoy.log")
	log := "a\n[source/server/server.cc:456] extension x\nb\n[source/server/server.cc:512] extension y\nc\n"
	if err := os.WriteFile(logPath, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := Tail(logPath, 2); got != "b\nc" {
		t.Errorf("Tail = %q, want the last two lines that are not inventory", got)
	}
}

func TestFreePortNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		p, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
}
