package health

import "context"

// runRecover calls run and turns a panic into a *PanicError.
func runRecover(ctx context.Context, run func(context.Context) error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v}
		}
	}()
	return run(ctx)
}
