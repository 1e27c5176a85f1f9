package xds

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
)

// errGrantWithdrawn prefixes the reason a connected node is refused when
// its access no longer holds.
var errGrantWithdrawn = errors.New("grant withdrawn while connected")

// revocable is a gRPC stream the server can end at any moment (see
// Server.Reauthorize). Once revoked, SendMsg sends nothing and RecvMsg
// returns at once, even when blocked on the transport: go-control-plane's
// reader then closes its request channel, its handler returns and the RPC
// ends with the revocation's status.
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
// streams (Envoys' metrics reports) pass through: a revocable stream costs
// a goroutine per message received.
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

// RecvMsg receives into m, returning as soon as the stream is revoked. The
// transport read it leaves behind ends with the RPC, which follows at once:
// the caller is the stream's reader, which stops on the error.
func (r *revocable) RecvMsg(m any) error {
	if err := r.revokedErr(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- r.ServerStream.RecvMsg(m) }()
	select {
	case err := <-done:
		if rerr := r.revokedErr(); rerr != nil {
			return rerr
		}
		return err
	case <-r.revoked:
		return r.err
	}
}

// attachedStream is an attached stream as Reauthorize checks it.
type attachedStream struct {
	key      streamKey
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
			a.stream.revoke(end)
		}
		revoked++
	}
	return revoked
}

// adsMethod reports whether a gRPC method is one of the ADS streams.
func adsMethod(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/"+discoverygrpc.AggregatedDiscoveryService_ServiceDesc.ServiceName+"/")
}
