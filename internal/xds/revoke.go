package xds

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/grpc"
)

// errGrantWithdrawn prefixes the reason a connected node is refused when
// its access no longer holds.
var errGrantWithdrawn = errors.New("grant withdrawn while connected")

// revocable is a gRPC stream the server can end at any moment (see
// Server.endStream): once revoked, SendMsg sends nothing and the RPC ends
// with the revocation's status whatever the handler returns. What makes
// the handler return at once is the delivery cache (deliveryCache.end):
// go-control-plane's stream loop waits on its request channel and its
// response channel, and a read blocked on the transport cannot be
// interrupted, but the cache holds the stream's response channel.
type revocable struct {
	grpc.ServerStream
	ctx     context.Context
	once    sync.Once
	revoked chan struct{}
	err     error // written before revoked is closed
}

type revocableKey struct{}

// revocableStreams is the stream interceptor that makes every ADS stream
// revocable; the ADS callbacks find the stream in its context. Other
// streams (Envoys' metrics reports) pass through.
func revocableStreams(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !adsMethod(info.FullMethod) {
		return handler(srv, ss)
	}
	r := &revocable{ServerStream: ss, revoked: make(chan struct{})}
	r.ctx = context.WithValue(ss.Context(), revocableKey{}, r)
	err := handler(srv, r)
	if rerr := r.revokedErr(); rerr != nil {
		return rerr
	}
	return err
}

// revocableFrom returns the stream a context belongs to, nil when the gRPC
// server runs without GRPCServerOptions.
func revocableFrom(ctx context.Context) *revocable {
	r, _ := ctx.Value(revocableKey{}).(*revocable)
	return r
}

func (r *revocable) Context() context.Context { return r.ctx }

// revoke ends the stream with err (a gRPC status error); later calls do
// nothing. It never blocks.
func (r *revocable) revoke(err error) {
	r.once.Do(func() {
		r.err = err
		close(r.revoked)
	})
}

// revokedErr is the revocation's error, nil while the stream is not revoked.
func (r *revocable) revokedErr() error {
	select {
	case <-r.revoked:
		return r.err
	default:
		return nil
	}
}

// SendMsg sends m unless the stream is revoked. A message passed after
// revoke returned is never sent.
func (r *revocable) SendMsg(m any) error {
	if err := r.revokedErr(); err != nil {
		return err
	}
	return r.ServerStream.SendMsg(m)
}

// RecvMsg receives into m; after revoke it returns the revocation's error
// at once. A read already blocked on the transport ends with the RPC.
func (r *revocable) RecvMsg(m any) error {
	if err := r.revokedErr(); err != nil {
		return err
	}
	return r.ServerStream.RecvMsg(m)
}

// attachedStream is an attached stream as Reauthorize checks it.
type attachedStream struct {
	key      streamKey
	group    string
	identity string
	node     *corev3.Node
	stream   *revocable
}

// Reauthorize runs check again for every node attached to a stream, with
// the identity and node it attached with, and ends the streams of those it
// now refuses: from its return on, nothing more is sent on them. Each is
// recorded as a refusal (status, metric, log) whose reason says the grant
// was withdrawn, and leaves the status as its stream closes. It returns
// how many streams it ended. Nodes attaching concurrently are checked by
// ServerOptions.Authorize either before Reauthorize (and then again by it)
// or after it returns, so Authorize must already decide as check does by
// the time Reauthorize is called.
func (s *Server) Reauthorize(check AuthorizeFunc) int {
	s.authMu.Lock()
	defer s.authMu.Unlock()
	revoked := 0
	for _, a := range s.tracker.attachedStreams() {
		err := check(a.identity, a.node)
		if err == nil {
			continue
		}
		end := s.deny(a.key, a.identity, a.node, fmt.Errorf("%w: %w", errGrantWithdrawn, err))
		if a.stream == nil {
			// Without the interceptor the stream ends on the node's next
			// request, which attach refuses.
			s.log.Error("cannot end the stream of a refused node at once: the gRPC server lacks xds.GRPCServerOptions",
				"node", a.node.GetId(), "identity", a.identity)
		} else {
			s.endStream(a, end)
		}
		revoked++
	}
	return revoked
}

// adsMethod reports whether a gRPC method is one of the ADS streams.
func adsMethod(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/"+discoverygrpc.AggregatedDiscoveryService_ServiceDesc.ServiceName+"/")
}

// endStream ends an attached stream with err (a gRPC status error): from
// its return on nothing more is sent on it, and its handler returns at
// once (see deliveryCache.end).
func (s *Server) endStream(a attachedStream, err error) {
	a.stream.revoke(err)
	s.cache.end(a.key, a.group, err)
}

// endedResponse is what the cache hands a stream it ends, through the
// stream's response channel: go-control-plane's stream loop takes it as a
// response, fails to build it and returns the error, which ends the RPC.
type endedResponse struct{ err error }

func (e endedResponse) GetDiscoveryResponse() (*discoverygrpc.DiscoveryResponse, error) {
	return nil, e.err
}
func (e endedResponse) GetDeltaDiscoveryResponse() (*discoverygrpc.DeltaDiscoveryResponse, error) {
	return nil, e.err
}
func (endedResponse) GetRequest() *discoverygrpc.DiscoveryRequest           { return nil }
func (endedResponse) GetDeltaRequest() *discoverygrpc.DeltaDiscoveryRequest { return nil }
func (endedResponse) GetVersion() (string, error)                           { return "", nil }
func (endedResponse) GetSystemVersion() (string, error)                     { return "", nil }
func (endedResponse) GetResponseVersion() string                            { return "" }
func (endedResponse) GetReturnedResources() map[string]string               { return nil }
func (endedResponse) GetNextVersionMap() map[string]string                  { return nil }
func (endedResponse) GetContext() context.Context                           { return context.Background() }

var (
	_ cache.Response      = endedResponse{}
	_ cache.DeltaResponse = endedResponse{}
)

// end makes the stream key, of group, return: its next watch is refused
// with err, and a watch it has open now is taken from the group and handed
// an endedResponse (its type's request is nil, so that go-control-plane's
// state-of-the-world loop, which drops answers of the type a new request
// asks for, never drops it). A stream with no watch open has a response
// on its way, whose send fails, or sends a request next, which the request
// callback refuses.
func (c *deliveryCache) end(key streamKey, group string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ended[key] = err
	e := c.groups[group]
	if e == nil {
		return
	}
	if i := slices.IndexFunc(e.sotw, func(w *sotwWatch) bool { return w.stream == key }); i >= 0 {
		w := e.sotw[i]
		e.sotw = slices.Delete(e.sotw, i, i+1)
		select {
		case w.out <- endedResponse{err}:
		default: // full of answers, whose sends fail
		}
		return
	}
	if i := slices.IndexFunc(e.delta, func(w *deltaWatch) bool { return w.stream == key }); i >= 0 {
		w := e.delta[i]
		e.delta = slices.Delete(e.delta, i, i+1)
		select {
		case w.out <- endedResponse{err}:
		default:
		}
	}
}
