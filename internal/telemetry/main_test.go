package telemetry

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine the Service starts (its workers) is waited for by Run.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
