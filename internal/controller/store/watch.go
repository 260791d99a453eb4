package store

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

// Record is one key of the schema as a list or watch delivers it. Kind, Name and IP come from the key;
// the value is decoded on demand by the method of the key's kind (Network, Host, Endpoint or Cursor).
type Record struct {
	// Kind is what the key is; KindOther for a key under the watched prefix that the schema does not
	// know (such a record is best skipped).
	Kind KeyKind
	// Key is the etcd key, for messages only.
	Key string
	// Name is the network (networks, endpoints, cursors) or host (hosts) the key names.
	Name string
	// IP is the address of an endpoint key.
	IP netip.Addr
	// Revision is the key's ModRevision: for a delete event, the revision of the delete.
	Revision int64

	val *mvccpb.KeyValue // the value; nil when a delete event does not carry it
}

// HasValue tells whether the record carries a value: always, except for a delete event of a watch
// that does not ask for deleted values.
func (r Record) HasValue() bool { return r.val != nil }

// Network decodes the value of a network key.
func (r Record) Network() (Network, error) {
	if r.val == nil {
		return Network{}, r.noValue()
	}
	return decodeNetwork(r.val)
}

// Host decodes the value of a host key.
func (r Record) Host() (Host, error) {
	if r.val == nil {
		return Host{}, r.noValue()
	}
	return decodeHost(r.val)
}

// Endpoint decodes the value of an endpoint key.
func (r Record) Endpoint() (api.Endpoint, error) {
	if r.val == nil {
		return api.Endpoint{}, r.noValue()
	}
	return decodeEndpoint(r.val)
}

// Cursor decodes the value of a cursor key: the last address handed out in network Name.
func (r Record) Cursor() (netip.Addr, error) {
	if r.val == nil {
		return netip.Addr{}, r.noValue()
	}
	return netip.ParseAddr(string(r.val.Value))
}

// Secret returns the raw value of a secret key (its meaning is the controller's).
func (r Record) Secret() ([]byte, error) {
	if r.val == nil {
		return nil, r.noValue()
	}
	return r.val.Value, nil
}

func (r Record) noValue() error {
	return fmt.Errorf("store: the event of %s carries no value", r.Key)
}

// EventType tells a put from a delete.
type EventType int

// Event types.
const (
	EventPut EventType = iota + 1
	EventDelete
)

// Event is one change of a watched key. A put carries the new value; a delete carries the key's Kind,
// Name and IP, and the deleted value only when the watch asked for previous values.
type Event struct {
	Type   EventType
	Record Record
	// Last marks the last event of its revision (one transaction can change many keys): once it is
	// applied, everything up to Record.Revision is.
	Last bool
}

// Watcher receives a list-then-watch stream. Snapshot replaces everything the watch covers with recs
// as of rev: first, and again whenever the history the watch needed was compacted or the store's
// revision is behind it (etcd restored from a backup; the store re-lists by itself). Event applies one change; Progress says nothing changed up to rev. A returned error ends
// the watch with that error. Calls come from one goroutine, in revision order.
type Watcher interface {
	Snapshot(recs []Record, rev int64) error
	Event(ev Event) error
	Progress(rev int64) error
}

// Watch lists every key of kind (KindNetwork, KindHost, KindEndpoint, KindCursor or KindSecret, in every
// network) and watches them for changes until ctx ends or w fails. When the watch breaks (etcd
// restarts, a member dies) it resumes from the last revision delivered.
func (s *Store) Watch(ctx context.Context, kind KeyKind, w Watcher) error {
	pfx := kindPrefix(kind)
	if pfx == "" {
		return fmt.Errorf("store: cannot watch keys of kind %v: %w", kind, errdefs.ErrInvalidArgument)
	}
	return s.listWatch(ctx, pfx, 0, false, w)
}

// listWatch lists prefix and watches it for changes until ctx ends.
// prevKV asks for the previous value with each event (deletes then say what was deleted); it costs
// etcd a read per event. With fromRev > 0 it resumes: it watches from fromRev+1 without a snapshot,
// and falls back to a fresh snapshot when that revision has been compacted or is ahead of the store
// (restored from a backup without a revision bump). When the watch breaks it resumes from the last
// revision delivered in full; it returns only when ctx ends or w returns an error.
func (s *Store) listWatch(ctx context.Context, prefix string, fromRev int64, prevKV bool, w Watcher) error {
	rev := fromRev
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		if rev > 0 && !s.checkRevision(ctx, prefix, &rev, &backoff) {
			continue
		}
		if rev == 0 {
			lctx, cancel := s.timeout(ctx)
			resp, err := s.cli.Get(lctx, prefix, clientv3.WithPrefix())
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					break
				}
				s.log.Debug("list failed; retrying", "prefix", prefix, "err", err)
				sleep(ctx, &backoff)
				continue
			}
			rev = resp.Header.Revision
			recs := make([]Record, len(resp.Kvs))
			for i, kv := range resp.Kvs {
				recs[i] = newRecord(kv, kv)
			}
			if err := w.Snapshot(recs, rev); err != nil {
				return err
			}
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithRev(rev + 1), clientv3.WithProgressNotify()}
		if prevKV {
			opts = append(opts, clientv3.WithPrevKV())
		}
		err := s.follow(s.cli.Watch(wctx, prefix, opts...), prefix, &rev, &backoff, w)
		cancel()
		if err != nil {
			return err
		}
		sleep(ctx, &backoff)
	}
	return ctx.Err()
}

// follow delivers one watch stream to w, advancing *rev, until the stream ends or breaks. A compacted
// history sets *rev to 0, so that the caller lists again.
func (s *Store) follow(wch clientv3.WatchChan, prefix string, rev *int64, backoff *time.Duration, w Watcher) error {
	for resp := range wch {
		if resp.CompactRevision != 0 {
			s.log.Info("watch history compacted; re-listing", "prefix", prefix, "from", *rev+1, "compacted", resp.CompactRevision)
			*rev = 0
			return nil
		}
		if err := resp.Err(); err != nil {
			s.log.Debug("watch broke; resuming", "prefix", prefix, "rev", *rev, "err", err)
			return nil
		}
		if resp.IsProgressNotify() {
			if resp.Header.Revision > *rev {
				*rev = resp.Header.Revision
			}
			if err := w.Progress(*rev); err != nil {
				return err
			}
			continue
		}
		// etcd never splits a revision across responses (its watch batches end at revision
		// boundaries, and fragmenting is off): the last event of a revision is the last of the
		// response or the one before an event of a later revision.
		for i, ev := range resp.Events {
			e := newEvent(ev)
			e.Last = i == len(resp.Events)-1 || resp.Events[i+1].Kv.ModRevision != ev.Kv.ModRevision
			if err := w.Event(e); err != nil {
				return err
			}
			if e.Last {
				*rev = ev.Kv.ModRevision
			}
		}
		*backoff = 100 * time.Millisecond
	}
	return nil
}

// checkRevision checks, before a watch resumes from *rev, that the store has reached *rev. A store
// whose revision is behind (etcd restored from a snapshot without --bump-revision) would keep the
// watch waiting for revisions that mean other changes: it sets *rev to 0, so that the caller lists
// again. It reports false when the store did not answer (the caller retries).
func (s *Store) checkRevision(ctx context.Context, prefix string, rev *int64, backoff *time.Duration) bool {
	lctx, cancel := s.timeout(ctx)
	resp, err := s.cli.Get(lctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithLimit(1))
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			s.log.Debug("reading the store revision failed; retrying", "prefix", prefix, "err", err)
			sleep(ctx, backoff)
		}
		return false
	}
	if resp.Header.Revision < *rev {
		s.log.Warn("the store's revision is behind the watch's (etcd restored from a backup without --bump-revision?); re-listing",
			"prefix", prefix, "watch", *rev, "store", resp.Header.Revision)
		*rev = 0
	}
	return true
}

// newEvent turns an etcd event into an Event: a put carries the new value, a delete the previous one
// when the event has it.
func newEvent(ev *clientv3.Event) Event {
	if ev.Type == clientv3.EventTypePut {
		return Event{Type: EventPut, Record: newRecord(ev.Kv, ev.Kv)}
	}
	return Event{Type: EventDelete, Record: newRecord(ev.Kv, ev.PrevKv)}
}

// newRecord describes key (its kind, names and revision) with the value of val (nil: none).
func newRecord(key, val *mvccpb.KeyValue) Record {
	r := Record{Key: string(key.Key), Revision: key.ModRevision, val: val}
	r.Kind, r.Name, r.IP = parseKey(r.Key)
	return r
}

func sleep(ctx context.Context, backoff *time.Duration) {
	t := time.NewTimer(*backoff)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	if *backoff < 2*time.Second {
		*backoff *= 2
	}
}
