package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/wasmxds/wasmxds/internal/xds"
)

// FloorServer is the reference point of every convergence figure: a bare
// go-control-plane SnapshotCache server that pushes a given resource set
// to every node group, with no catalog, fetcher or translation. Nodes are
// grouped by label set exactly as wasmxds groups them.
type FloorServer struct {
	log   *slog.Logger
	cache cache.SnapshotCache
	xds   serverv3.Server

	mu        sync.Mutex
	version   int
	resources map[string][]types.Resource
	groups    map[string]bool // keys that have a snapshot
}

// NewFloorServer returns a server with no resources; nodes that connect
// before the first SetResources wait for it.
func NewFloorServer(ctx context.Context, logger *slog.Logger) *FloorServer {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f := &FloorServer{log: logger.With("component", "floor"), groups: map[string]bool{}}
	f.cache = cache.NewSnapshotCache(true, floorHash{}, nil)
	f.xds = serverv3.NewServer(ctx, f.cache, serverv3.CallbackFuncs{
		StreamRequestFunc: func(_ int64, req *discoverygrpc.DiscoveryRequest) error {
			f.ensure(req.GetNode())
			return nil
		},
		StreamDeltaRequestFunc: func(_ int64, req *discoverygrpc.DeltaDiscoveryRequest) error {
			f.ensure(req.GetNode())
			return nil
		},
	})
	return f
}

// floorHash keys snapshots by label set, as wasmxds does.
type floorHash struct{}

// ID implements cache.NodeHash.
func (floorHash) ID(node *corev3.Node) string { return xds.GroupKey(xds.NodeLabels(node)) }

// Register adds the ADS service to a gRPC server.
func (f *FloorServer) Register(reg grpc.ServiceRegistrar) {
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(reg, f.xds)
}

// SetResources makes resources (by type URL) the new version for every
// known group; it returns once every snapshot is set.
func (f *FloorServer) SetResources(res map[string][]types.Resource) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.version++
	f.resources = res
	for key := range f.groups {
		if err := f.setLocked(key); err != nil {
			return err
		}
	}
	return nil
}

// ensure gives a newly seen group its snapshot before its watch is made.
func (f *FloorServer) ensure(node *corev3.Node) {
	if node == nil {
		return
	}
	key := floorHash{}.ID(node)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.groups[key] || f.resources == nil {
		return
	}
	if err := f.setLocked(key); err != nil {
		f.log.Error("set snapshot", "group", key, "error", err)
	}
}

func (f *FloorServer) setLocked(key string) error {
	snap, err := cache.NewSnapshot(strconv.Itoa(f.version), f.resources)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	if err := f.cache.SetSnapshot(context.Background(), key, snap); err != nil {
		return fmt.Errorf("set snapshot %s: %w", key, err)
	}
	f.groups[key] = true
	return nil
}

// ControlHandler accepts PUT /resources with a body that is a
// DiscoveryResponse holding every resource, of any type, as an Any.
func (f *FloorServer) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("PUT /resources", func(w http.ResponseWriter, r *http.Request) {
		res, err := decodeResources(r.Body)
		if err == nil {
			err = f.SetResources(res)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// EncodeResources packs resources for FloorServer's control endpoint.
func EncodeResources(res *xds.Resources) ([]byte, error) {
	var msgs []proto.Message
	for _, m := range res.Clusters {
		msgs = append(msgs, m)
	}
	for _, m := range res.Listeners {
		msgs = append(msgs, m)
	}
	for _, m := range res.Routes {
		msgs = append(msgs, m)
	}
	for _, m := range res.Extensions {
		msgs = append(msgs, m)
	}
	out := &discoverygrpc.DiscoveryResponse{}
	for _, m := range msgs {
		a, err := anypb.New(m)
		if err != nil {
			return nil, fmt.Errorf("pack: %w", err)
		}
		out.Resources = append(out.Resources, a)
	}
	return proto.Marshal(out)
}

func decodeResources(r io.Reader) (map[string][]types.Resource, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	msg := &discoverygrpc.DiscoveryResponse{}
	if err := proto.Unmarshal(b, msg); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	out := map[string][]types.Resource{}
	for _, a := range msg.GetResources() {
		m, err := a.UnmarshalNew()
		if err != nil {
			return nil, fmt.Errorf("decode %s: %w", a.GetTypeUrl(), err)
		}
		out[a.GetTypeUrl()] = append(out[a.GetTypeUrl()], m)
	}
	return out, nil
}
