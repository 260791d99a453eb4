package api

import (
	"bytes"
	"strings"
	"testing"
)

func TestFramesRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	fw := NewFrameWriter(&buf)
	big := bytes.Repeat([]byte("x"), maxFrame+10)
	frames := []struct {
		t byte
		p []byte
	}{{FrameStdout, []byte("hello\n")}, {FrameStderr, nil}, {FrameStdin, big}, {FrameExit, []byte(`{"exitCode":3}`)}}
	for _, f := range frames {
		if err := fw.Write(f.t, f.p); err != nil {
			t.Fatal(err)
		}
	}
	var got []byte
	for i := 0; ; i++ {
		typ, p, err := ReadFrame(&buf)
		if err != nil {
			break
		}
		if typ == FrameStdin {
			got = append(got, p...)
			continue
		}
		if typ == FrameExit && string(p) != `{"exitCode":3}` {
			t.Errorf("exit frame %q", p)
		}
	}
	if !bytes.Equal(got, big) {
		t.Errorf("a payload over the frame limit came back as %d bytes, want %d", len(got), len(big))
	}
}

func TestReadFrameRefusesHugeLength(t *testing.T) {
	_, _, err := ReadFrame(bytes.NewReader([]byte{1, 0xff, 0xff, 0xff, 0xff}))
	if err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("got %v, want a refusal", err)
	}
}
