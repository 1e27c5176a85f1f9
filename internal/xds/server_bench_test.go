package xds

import (
	"fmt"
	"testing"

	"github.com/wasmxds/wasmxds/internal/xdstest"
)

// benchServer is a server with n node groups known, as if one node of each
// label set had connected.
func benchServer(b *testing.B, groups int) *Server {
	b.Helper()
	srv, err := NewServer(ServerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	srv.translate = fakeTranslate
	b.Cleanup(srv.Close)
	srv.Update(testInput(8080, DeliveryLDS))
	for i := range groups {
		key := streamKey{id: int64(i)}
		srv.tracker.open(key, "", "", nil)
		srv.attach(key, xdstest.Node(fmt.Sprint("n", i), "", map[string]string{
			"app": []string{"a", "b"}[i%2], "shard": fmt.Sprint(i),
		}))
	}
	return srv
}

// BenchmarkUpdateChanged is the cost of an Input change reaching every
// group's snapshot (translate, hash, consistency check, set).
func BenchmarkUpdateChanged(b *testing.B) {
	for _, groups := range []int{1, 100} {
		b.Run(fmt.Sprint(groups, "groups"), func(b *testing.B) {
			srv := benchServer(b, groups)
			for i := 0; b.Loop(); i++ {
				srv.Update(testInput(uint32(9000+i%2), DeliveryLDS))
			}
		})
	}
}

// BenchmarkUpdateUnchanged is the cost of an Input that changes nothing
// Envoy sees: everything is rebuilt and hashed, nothing is set.
func BenchmarkUpdateUnchanged(b *testing.B) {
	for _, groups := range []int{1, 100} {
		b.Run(fmt.Sprint(groups, "groups"), func(b *testing.B) {
			srv := benchServer(b, groups)
			for b.Loop() {
				srv.Update(testInput(8080, DeliveryLDS))
			}
		})
	}
}
