// Command xdsfloor runs bench.FloorServer as its own process, so that its
// memory and CPU are measured apart from the load generator's. Resources
// are set with PUT /resources on the control listener.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"

	"github.com/wasmxds/wasmxds/bench"
	"github.com/wasmxds/wasmxds/internal/xds"
)

func main() {
	xdsListen := flag.String("xds-listen", "127.0.0.1:18100", "ADS gRPC listen address")
	controlListen := flag.String("control-listen", "127.0.0.1:18180", "control HTTP listen address")
	flag.Parse()
	if err := run(*xdsListen, *controlListen); err != nil {
		fmt.Fprintln(os.Stderr, "xdsfloor:", err)
		os.Exit(1)
	}
}

func run(xdsListen, controlListen string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	floor := bench.NewFloorServer(ctx, log)
	// The same transport settings as wasmxds, so that the comparison is
	// between control planes, not gRPC configurations.
	gs := grpc.NewServer(xds.GRPCTransportOptions()...)
	floor.Register(gs)
	xl, err := net.Listen("tcp", xdsListen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	cl, err := net.Listen("tcp", controlListen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	hs := &http.Server{Handler: floor.ControlHandler()}
	errc := make(chan error, 2)
	go func() { errc <- gs.Serve(xl) }()
	go func() { errc <- hs.Serve(cl) }()
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	gs.Stop()
	_ = hs.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
