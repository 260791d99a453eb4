package shim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"
)

// LogEntry is one line of a container's json-lines log file (docker's json-file format).
type LogEntry struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"` // stdout or stderr
	Time   time.Time `json:"time"`
}

// logFile appends output to a json-lines file, one entry per line of output. A partial line is kept
// until its newline arrives or the stream ends. Not safe for concurrent use; the shim serialises.
type logFile struct {
	f       *os.File
	partial map[string][]byte
}

func openLogFile(path string) (*logFile, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open container log: %w", err)
	}
	return &logFile{f: f, partial: map[string][]byte{}}, nil
}

func (l *logFile) write(stream string, p []byte) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	now := time.Now().UTC()
	data := append(l.partial[stream], p...)
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		if err := enc.Encode(LogEntry{Log: string(data[:i+1]), Stream: stream, Time: now}); err != nil {
			return err
		}
		data = data[i+1:]
	}
	// Long partial lines are written in pieces rather than held in memory.
	if len(data) >= 16<<10 {
		if err := enc.Encode(LogEntry{Log: string(data), Stream: stream, Time: now}); err != nil {
			return err
		}
		data = nil
	}
	l.partial[stream] = append([]byte(nil), data...)
	if buf.Len() == 0 {
		return nil
	}
	_, err := l.f.Write(buf.Bytes())
	return err
}

// flush writes any partial lines.
func (l *logFile) flush() error {
	for stream, data := range l.partial {
		if len(data) == 0 {
			continue
		}
		b, _ := json.Marshal(LogEntry{Log: string(data), Stream: stream, Time: time.Now().UTC()})
		if _, err := l.f.Write(append(b, '\n')); err != nil {
			return err
		}
		l.partial[stream] = nil
	}
	return nil
}

func (l *logFile) close() error {
	err := l.flush()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// ReadLog calls fn for the entries of the log file at path, the last tail of them (tail < 0: all).
// It returns the offset up to which it read. A missing file is an empty log.
func ReadLog(path string, tail int, fn func(LogEntry) error) (int64, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return readLogFrom(f, tail, fn)
}

func readLogFrom(f io.Reader, tail int, fn func(LogEntry) error) (int64, error) {
	var off int64
	r := bufio.NewReaderSize(f, 64<<10)
	var ring []LogEntry
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			off += int64(len(line))
			var e LogEntry
			if json.Unmarshal(line, &e) == nil {
				if tail < 0 {
					if ferr := fn(e); ferr != nil {
						return off, ferr
					}
				} else if tail > 0 {
					ring = append(ring, e)
					if len(ring) > tail {
						ring = ring[1:]
					}
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return off, err
		}
	}
	for _, e := range ring {
		if err := fn(e); err != nil {
			return off, err
		}
	}
	return off, nil
}
