package shim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// LogEntry is one line of a container's json-lines log file (docker's json-file format).
type LogEntry struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"` // stdout or stderr
	Time   time.Time `json:"time"`
}

// logFile appends output to a json-lines file, one entry per line of output. A partial line is kept
// until its newline arrives or the stream ends. It rotates as Docker's json-file driver does: when the
// next entry would take the file past maxSize, path becomes path.1 (path.1 becomes path.2, ..., the
// oldest beyond maxFile files is removed) and a new path is begun; with maxFile 1 the file is emptied
// instead. So the log takes at most maxSize x maxFile bytes, plus one entry where a single entry is
// larger than maxSize. Not safe for concurrent use; the shim serialises.
type logFile struct {
	f       *os.File
	path    string
	size    int64 // bytes in f
	maxSize int64 // 0: never rotate
	maxFile int
	partial map[string][]byte
}

func openLogFile(path string, maxSize int64, maxFile int) (*logFile, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open container log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open container log: %w", err)
	}
	if maxFile < 1 {
		maxFile = 1
	}
	// Rotated files beyond maxFile (left by a larger max-file before) would never be removed.
	for _, n := range rotatedLogs(path) {
		if n >= maxFile {
			_ = os.Remove(rotatedLog(path, n))
		}
	}
	return &logFile{f: f, path: path, size: fi.Size(), maxSize: maxSize, maxFile: maxFile, partial: map[string][]byte{}}, nil
}

func rotatedLog(path string, n int) string { return path + "." + strconv.Itoa(n) }

// rotatedLogs returns the numbers N of the files path.N that exist, in ascending order.
func rotatedLogs(path string) []int {
	matches, _ := filepath.Glob(globEscape(path) + ".*")
	var ns []int
	for _, m := range matches {
		if n, err := strconv.Atoi(strings.TrimPrefix(m, path+".")); err == nil && n > 0 {
			ns = append(ns, n)
		}
	}
	sort.Ints(ns)
	return ns
}

func globEscape(p string) string {
	return strings.NewReplacer(`\`, `\\`, "*", `\*`, "?", `\?`, "[", `\[`).Replace(p)
}

// rotate begins a new, empty log file, keeping the last maxFile-1 full ones.
func (l *logFile) rotate() error {
	if l.maxFile <= 1 {
		if err := l.f.Truncate(0); err != nil {
			return fmt.Errorf("rotate container log: %w", err)
		}
		l.size = 0
		return nil
	}
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("rotate container log: %w", err)
	}
	_ = os.Remove(rotatedLog(l.path, l.maxFile-1))
	for n := l.maxFile - 2; n >= 1; n-- {
		if err := os.Rename(rotatedLog(l.path, n), rotatedLog(l.path, n+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("rotate container log: %w", err)
		}
	}
	if err := os.Rename(l.path, rotatedLog(l.path, 1)); err != nil {
		return fmt.Errorf("rotate container log: %w", err)
	}
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("rotate container log: %w", err)
	}
	l.f, l.size = f, 0
	return nil
}

// append writes the encoded entries in buf, rotating first if they would take the file past maxSize.
// Each entry stays whole in one file.
func (l *logFile) append(entry []byte, buf *bytes.Buffer) error {
	if l.maxSize > 0 && l.size+int64(buf.Len()+len(entry)) > l.maxSize && l.size+int64(buf.Len()) > 0 {
		if err := l.writeOut(buf); err != nil {
			return err
		}
		if err := l.rotate(); err != nil {
			return err
		}
	}
	buf.Write(entry)
	return nil
}

func (l *logFile) writeOut(buf *bytes.Buffer) error {
	if buf.Len() == 0 {
		return nil
	}
	n, err := l.f.Write(buf.Bytes())
	l.size += int64(n)
	buf.Reset()
	return err
}

func (l *logFile) write(stream string, p []byte) error {
	var buf bytes.Buffer
	now := time.Now().UTC()
	data := append(l.partial[stream], p...)
	put := func(line []byte) error {
		b, err := json.Marshal(LogEntry{Log: string(line), Stream: stream, Time: now})
		if err != nil {
			return err
		}
		return l.append(append(b, '\n'), &buf)
	}
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		if err := put(data[:i+1]); err != nil {
			return err
		}
		data = data[i+1:]
	}
	// Long partial lines are written in pieces rather than held in memory.
	if len(data) >= 16<<10 {
		if err := put(data); err != nil {
			return err
		}
		data = nil
	}
	l.partial[stream] = append([]byte(nil), data...)
	return l.writeOut(&buf)
}

// flush writes any partial lines.
func (l *logFile) flush() error {
	var buf bytes.Buffer
	for stream, data := range l.partial {
		if len(data) == 0 {
			continue
		}
		b, _ := json.Marshal(LogEntry{Log: string(data), Stream: stream, Time: time.Now().UTC()})
		if err := l.append(append(b, '\n'), &buf); err != nil {
			return err
		}
		l.partial[stream] = nil
	}
	return l.writeOut(&buf)
}

func (l *logFile) close() error {
	err := l.flush()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// ReadLog calls fn for the entries of the log at path, oldest first across its rotated files (path.N
// ... path.1, then path), the last tail of them (tail < 0: all). It returns the bytes it read. A
// missing file is an empty log.
func ReadLog(path string, tail int, fn func(LogEntry) error) (int64, error) {
	var readers []io.Reader
	ns := rotatedLogs(path)
	names := make([]string, 0, len(ns)+1)
	for i := len(ns) - 1; i >= 0; i-- {
		names = append(names, rotatedLog(path, ns[i]))
	}
	for _, name := range append(names, path) {
		f, err := os.Open(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, err
		}
		defer f.Close()
		readers = append(readers, f)
	}
	return readLogFrom(io.MultiReader(readers...), tail, fn)
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
