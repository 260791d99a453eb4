package api

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
)

// Frame types of the attach, exec and logs streams. Each frame is 1 byte of type, 4 bytes of
// big-endian payload length and the payload. Server to client: FrameStdout, FrameStderr, then one
// FrameExit (payload: api.Exit JSON) as the last frame, or FrameError (api.Error JSON). Client to
// server: FrameStdin, FrameCloseStdin (no payload) and FrameResize (payload: Winsize JSON).
const (
	FrameStdin      byte = 0
	FrameStdout     byte = 1
	FrameStderr     byte = 2
	FrameExit       byte = 3
	FrameResize     byte = 4
	FrameCloseStdin byte = 5
	FrameError      byte = 6
)

// maxFrame bounds a frame's payload so a broken peer cannot make us allocate gigabytes.
const maxFrame = 1 << 20

// Winsize is a terminal's size, carried by FrameResize.
type Winsize struct {
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

// FrameWriter writes frames; it is safe for concurrent use.
type FrameWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// NewFrameWriter returns a FrameWriter on w.
func NewFrameWriter(w io.Writer) *FrameWriter { return &FrameWriter{w: w} }

// Write writes one frame of type t. Payloads larger than the frame limit are split.
func (f *FrameWriter) Write(t byte, p []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		n := len(p)
		if n > maxFrame {
			n = maxFrame
		}
		var hdr [5]byte
		hdr[0] = t
		binary.BigEndian.PutUint32(hdr[1:], uint32(n))
		if _, err := f.w.Write(append(hdr[:], p[:n]...)); err != nil {
			return err
		}
		p = p[n:]
		if len(p) == 0 {
			if fl, ok := f.w.(interface{ Flush() }); ok {
				fl.Flush()
			}
			return nil
		}
	}
}

// WriteJSON writes one frame of type t whose payload is v as JSON.
func (f *FrameWriter) WriteJSON(t byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return f.Write(t, b)
}

// StreamWriter returns an io.Writer that writes each Write as one frame of type t.
func (f *FrameWriter) StreamWriter(t byte) io.Writer { return streamWriter{f, t} }

type streamWriter struct {
	f *FrameWriter
	t byte
}

func (s streamWriter) Write(p []byte) (int, error) {
	if err := s.f.Write(s.t, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// ReadFrame reads one frame from r.
func ReadFrame(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("stream frame of %d bytes exceeds the limit of %d", n, maxFrame)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, err
	}
	return hdr[0], p, nil
}

// FlushWriter returns a writer that flushes w after every write, so that streamed frames leave at
// once.
func FlushWriter(w http.ResponseWriter) io.Writer {
	fl, _ := w.(http.Flusher)
	return flushWriter{w, fl}
}

type flushWriter struct {
	w  io.Writer
	fl http.Flusher
}

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if f.fl != nil {
		f.fl.Flush()
	}
	return n, err
}
