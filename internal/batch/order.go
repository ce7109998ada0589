package batch

import (
	"context"
	"sync"

	"github.com/provision-matrix/provision/internal/report"
)

// orderer emits rows in roster order although users finish in any order. It holds at
// most window rows: the feeder waits (reserve) before starting user i until row
// i-window has been emitted, so memory stays bounded however long the roster is.
type orderer struct {
	mu      sync.Mutex
	cond    *sync.Cond
	next    int // index of the next row to emit
	window  int
	pending map[int]report.Row
	emit    func(report.Row) error
	err     error
}

func newOrderer(window int, emit func(report.Row) error) *orderer {
	o := &orderer{window: window, pending: make(map[int]report.Row), emit: emit}
	o.cond = sync.NewCond(&o.mu)
	return o
}

// reserve waits until row i fits in the window.
func (o *orderer) reserve(ctx context.Context, i int) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i >= o.next+o.window && o.err == nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		o.cond.Wait()
	}
	return o.err
}

// done records row i and emits every row that is now in order.
func (o *orderer) done(i int, row report.Row) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return o.err
	}
	o.pending[i] = row
	for {
		r, ok := o.pending[o.next]
		if !ok {
			break
		}
		delete(o.pending, o.next)
		o.next++
		if err := o.emit(r); err != nil {
			o.err = err
			break
		}
	}
	o.cond.Broadcast()
	return o.err
}

// reportRows is the orderer a run reports through: each row, completed by fill when
// it is set, reaches the summary, the progress callback and the sink in roster order.
// The window is generous enough that one slow user rarely holds the feeder back.
func reportRows(concurrency int, sum *report.Summary, onRow func(report.Row), sink Sink, fill func(*report.Row)) *orderer {
	return newOrderer(max(256, 16*concurrency), func(row report.Row) error {
		if fill != nil {
			fill(&row)
		}
		sum.Add(row)
		if onRow != nil {
			onRow(row)
		}
		return sink.Write(row)
	})
}
