package faultproxy

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

var blob = bytes.Repeat([]byte("0123456789"), 1000)

// start runs a backend that answers /blobs/x with blob and anything else
// with "ok", and a proxy in front of it.
func start(t *testing.T) *Proxy {
	t.Helper()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/blobs/") {
			_, _ = w.Write(blob)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(backend.Close)
	p, err := Start(backend.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// fetch GETs path through the proxy on a new connection.
func fetch(p *Proxy, path string) (int, []byte, error) {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + p.Addr() + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func TestPassForwards(t *testing.T) {
	p := start(t)
	code, b, err := fetch(p, "/v2/r/blobs/x")
	if err != nil || code != http.StatusOK || !bytes.Equal(b, blob) {
		t.Fatalf("GET = %d, %d bytes, %v; want 200 with the blob", code, len(b), err)
	}
}

func TestDownResetsNewAndKeptAliveConnections(t *testing.T) {
	p := start(t)
	keep := &http.Client{Timeout: 10 * time.Second}
	resp, err := keep.Get("http://" + p.Addr() + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	p.Set(Fault{Mode: Down})
	if code, _, err := fetch(p, "/v2/"); err == nil {
		t.Errorf("GET on a new connection while down = %d, want a connection error", code)
	}
	if resp, err := keep.Get("http://" + p.Addr() + "/v2/"); err == nil {
		resp.Body.Close()
		t.Errorf("GET on a kept-alive connection while down = %d, want a connection error", resp.StatusCode)
	}
	p.Set(Fault{Mode: Pass})
	if code, b, err := fetch(p, "/v2/"); err != nil || code != http.StatusOK || string(b) != "ok" {
		t.Errorf("GET after coming back = %d %q %v", code, b, err)
	}
}

func TestUnavailableAnswers503OnlyWhereItMatches(t *testing.T) {
	p := start(t)
	p.Set(Fault{Mode: Unavailable, Match: "/blobs/"})
	if code, _, err := fetch(p, "/v2/r/blobs/x"); err != nil || code != http.StatusServiceUnavailable {
		t.Errorf("blob GET = %d %v, want 503", code, err)
	}
	if code, b, err := fetch(p, "/v2/"); err != nil || code != http.StatusOK || string(b) != "ok" {
		t.Errorf("GET of an unmatched path = %d %q %v, want it passed", code, b, err)
	}
	if p.Requests() != 2 || p.Faulted() != 1 {
		t.Errorf("requests %d, faulted %d; want 2 and 1", p.Requests(), p.Faulted())
	}
}

func TestSlowDelaysThenForwards(t *testing.T) {
	p := start(t)
	const delay = 300 * time.Millisecond
	p.Set(Fault{Mode: Slow, Delay: delay})
	begin := time.Now()
	code, b, err := fetch(p, "/v2/r/blobs/x")
	if err != nil || code != http.StatusOK || !bytes.Equal(b, blob) {
		t.Fatalf("slow GET = %d, %d bytes, %v; want 200 with the blob", code, len(b), err)
	}
	if took := time.Since(begin); took < delay {
		t.Errorf("slow GET answered after %v, before the %v delay", took, delay)
	}
}

func TestHangNeverAnswersUntilClosed(t *testing.T) {
	p := start(t)
	p.Set(Fault{Mode: Hang})
	done := make(chan error, 1)
	go func() {
		_, _, err := fetch(p, "/v2/")
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for p.Requests() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the request never reached the proxy")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("a hanging request was answered: %v", err)
	default:
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Error("the hanging request succeeded once the proxy closed, want an error")
	}
}

func TestResetMidBodySendsHeadersAndPartOfTheBody(t *testing.T) {
	p := start(t)
	p.Set(Fault{Mode: ResetMidBody, Match: "/blobs/"})
	code, b, err := fetch(p, "/v2/r/blobs/x")
	if code != http.StatusOK {
		t.Fatalf("status %d (%v), want the upstream's 200 before the reset", code, err)
	}
	if err == nil || len(b) == 0 || len(b) >= len(blob) || !bytes.Equal(b, blob[:len(b)]) {
		t.Fatalf("body: %d of %d bytes, err %v; want a prefix of the blob and an error", len(b), len(blob), err)
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) && !strings.Contains(err.Error(), "reset") {
		t.Errorf("body error %v, want a reset or an unexpected EOF", err)
	}
	if code, b, err := fetch(p, "/v2/"); err != nil || code != http.StatusOK || string(b) != "ok" {
		t.Errorf("GET of an unmatched path = %d %q %v", code, b, err)
	}
}
