package endpoint

import (
	"context"
	"errors"
	"testing"
)

// TestRetireHooks: Retire ends every attempt still on the list, with its
// cause, and none taken off it (first, middle or last of the list); a
// hook put on after the retirement is refused, so its caller ends the
// attempt itself; taking a hook off twice, or after it fired, is harmless.
func TestRetireHooks(t *testing.T) {
	b := mustNew(t, Spec{URL: "http://a:1"}, HealthPolicy{})
	errRetired := errors.New("retired")
	ctxs := make([]context.Context, 5)
	hooks := make([]*RetireHook, 5)
	for i := range hooks {
		ctx, cancel := context.WithCancelCause(context.Background())
		ctxs[i], hooks[i] = ctx, &RetireHook{Cancel: cancel, Cause: errRetired}
		if !b.HookRetire(hooks[i]) {
			t.Fatalf("hook %d refused before the retirement", i)
		}
	}
	for _, i := range []int{0, 2, 4} { // the first put on, one inside, the last
		b.UnhookRetire(hooks[i])
		b.UnhookRetire(hooks[i])
	}
	b.Retire()
	for i, ctx := range ctxs {
		ended := context.Cause(ctx)
		if want := i == 1 || i == 3; want != errors.Is(ended, errRetired) || !want && ended != nil {
			t.Fatalf("hook %d: cause %v after the retirement (taken off: %v)", i, ended, !want)
		}
	}
	b.UnhookRetire(hooks[1]) // fired already
	if b.HookRetire(&RetireHook{Cancel: func(error) { t.Fatal("a refused hook fired") }}) {
		t.Fatal("a hook put on after the retirement")
	}
	b.Retire() // twice: nothing left to fire
	select {
	case <-b.Context().Done():
	default:
		t.Fatal("Retire left the context open")
	}
}
