package hall

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine they started is
// still running when they end. oto's context lives as long as the process
// (oto/v2 allows one and cannot close it), so its two goroutines are not
// leaks.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/hajimehoshi/oto/v2/internal/mux.(*Mux).loop"),
		goleak.IgnoreAnyFunction("github.com/hajimehoshi/oto/v2.(*context).readAndWrite"))
}
