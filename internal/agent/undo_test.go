package agent

import (
	"errors"
	"slices"
	"testing"

	"github.com/ovnet/ov/api"
)

func TestUndo(t *testing.T) {
	for _, tc := range []struct {
		name   string
		commit bool
		want   []int
	}{
		{name: "failure rolls back in reverse, once", want: []int{3, 2, 1}},
		{name: "commit keeps everything", commit: true, want: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var u undo
			var ran []int
			for i := 1; i <= 3; i++ {
				u.add(func() { ran = append(ran, i) })
			}
			if tc.commit {
				u.commit()
			}
			u.rollback()
			u.rollback()
			if !slices.Equal(ran, tc.want) {
				t.Fatalf("rollbacks ran %v, want %v", ran, tc.want)
			}
		})
	}
}

// An attach still in flight finishes before the steps registered before it (its detach) roll back.
func TestStartAttachWaitsBeforeRollback(t *testing.T) {
	a := &Agent{}
	var u undo
	var order []string
	u.add(func() { order = append(order, "detach") })
	p := a.startAttach(t.Context(), "id", "name", api.ContainerCreate{}, netMode{}, "", errors.New("no namespace"), &u)
	u.add(func() { order = append(order, "later stage") })
	u.rollback()
	if !p.got || !slices.Equal(order, []string{"later stage", "detach"}) {
		t.Fatalf("attach waited %v, rollbacks %v; want the wait, then later stage, detach", p.got, order)
	}
	if res := p.wait(); res.err != nil || res.endpoints != nil {
		t.Fatalf("second wait: %+v, want the first (empty) result again", res)
	}
}
