package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Child is a child process that is killed by pid when closed.
type Child struct {
	Cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// StartChild starts cmd in its own process group, set to die with this
// process (PR_SET_PDEATHSIG, prctl(2)), so that a killed benchmark leaves
// nothing behind.
func StartChild(cmd *exec.Cmd) (*Child, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	c := &Child{Cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// Pid returns the child's process id.
func (c *Child) Pid() int { return c.Cmd.Process.Pid }

// Exited is closed when the child has exited.
func (c *Child) Exited() <-chan struct{} { return c.done }

// Close asks the child to stop with SIGTERM, waits up to grace, then kills
// it with SIGKILL. It signals only the child's own pid and is idempotent.
func (c *Child) Close(grace time.Duration) error {
	select {
	case <-c.done:
		return nil
	default:
	}
	_ = c.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return nil
	case <-time.After(grace):
	}
	if err := c.Cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %d: %w", c.Pid(), err)
	}
	<-c.done
	return nil
}
