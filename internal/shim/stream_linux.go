package shim

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"

	"github.com/ovnet/ov/api"
)

type frame struct {
	t byte
	p []byte
}

type subscriber struct {
	ch   chan frame
	done chan struct{}
}

// copyOutput copies one output stream of the container into the log and to subscribers.
func (s *Shim) copyOutput(r *os.File, stream string, t byte) {
	s.ioDone.Add(1)
	go func() {
		defer s.ioDone.Done()
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				p := append([]byte(nil), buf[:n]...)
				s.ioMu.Lock()
				if werr := s.logf.write(stream, p); werr != nil {
					s.log.Warn("write container log", "err", werr)
				}
				for sub := range s.subs {
					select {
					case sub.ch <- frame{t, p}:
					case <-sub.done:
					}
				}
				s.ioMu.Unlock()
			}
			if err != nil {
				if !s.cfg.Tty {
					r.Close()
				}
				return
			}
		}
	}()
}

// hijack answers 101 and takes over the connection of an upgrade request.
func hijack(w http.ResponseWriter) (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("connection cannot be hijacked")
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ov-stream\r\n\r\n")
	if err := rw.Flush(); err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, rw, nil
}

func (s *Shim) subscribe() *subscriber {
	sub := &subscriber{ch: make(chan frame, 64), done: make(chan struct{})}
	s.subs[sub] = struct{}{}
	return sub
}

func (s *Shim) unsubscribe(sub *subscriber) {
	s.ioMu.Lock()
	delete(s.subs, sub)
	s.ioMu.Unlock()
}

// pump writes sub's frames to fw until the container exits (then drains what is queued) or the
// client goes away.
func (s *Shim) pump(sub *subscriber, fw *api.FrameWriter) error {
	for {
		select {
		case f := <-sub.ch:
			if err := fw.Write(f.t, f.p); err != nil {
				return err
			}
		case <-s.exited:
			for {
				select {
				case f := <-sub.ch:
					if err := fw.Write(f.t, f.p); err != nil {
						return err
					}
				default:
					return nil
				}
			}
		}
	}
}

// readInput feeds stdin frames from r to stdin and resize frames to console until r ends.
func (s *Shim) readInput(r io.Reader, stdin, console *os.File, closable bool) {
	for {
		t, p, err := api.ReadFrame(r)
		if err != nil {
			return
		}
		switch t {
		case api.FrameStdin:
			if stdin != nil {
				_, _ = stdin.Write(p)
			}
		case api.FrameCloseStdin:
			if stdin != nil && closable {
				_ = stdin.Close()
			} else if stdin != nil && console != nil {
				_, _ = stdin.Write([]byte{4}) // ^D: end of input on a terminal
			}
		case api.FrameResize:
			var ws api.Winsize
			if console != nil && json.Unmarshal(p, &ws) == nil {
				_ = setWinsize(console, ws)
			}
		}
	}
}
