package hall

import "testing"

// runMain runs the tests; sink subprocess tests hook in here.
func runMain(m *testing.M) int { return m.Run() }
