package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/ovnet/ov/api"
)

// pullDisplay shows the progress of a pull or push as docker does: on a terminal one line per layer,
// redrawn in place with a bar while it downloads or uploads; otherwise plain lines, one per change of
// a layer's status (byte counts left out).
type pullDisplay struct {
	w     io.Writer // nil: show nothing
	tty   bool
	order []string          // layers in the order first seen
	lines map[string]string // layer -> its current line
	last  map[string]string // layer -> last status printed (plain mode)
	drawn int               // layer lines on screen below the cursor's region start (tty)
}

func newPullDisplay(w io.Writer, tty bool) *pullDisplay {
	return &pullDisplay{w: w, tty: tty, lines: map[string]string{}, last: map[string]string{}}
}

func (p *pullDisplay) event(ev api.ImagePullEvent) {
	if p.w == nil {
		return
	}
	if ev.Layer == "" {
		fmt.Fprintln(p.w, ev.Status)
		p.order, p.drawn = nil, 0 // layer lines start afresh below
		clear(p.lines)
		return
	}
	if _, ok := p.lines[ev.Layer]; !ok {
		p.order = append(p.order, ev.Layer)
	}
	p.lines[ev.Layer] = layerLine(ev, p.tty)
	if !p.tty {
		busy := ev.Status == "Downloading" || ev.Status == "Pushing"
		if !busy && p.last[ev.Layer] != ev.Status {
			p.last[ev.Layer] = ev.Status
			fmt.Fprintln(p.w, p.lines[ev.Layer])
		}
		return
	}
	var b strings.Builder
	if p.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", p.drawn) // back to the first layer line
	}
	for _, l := range p.order {
		fmt.Fprintf(&b, "\r\x1b[2K%s\n", p.lines[l])
	}
	p.drawn = len(p.order)
	io.WriteString(p.w, b.String())
}

// finish ends the display (nothing left to do: every line ends with a newline).
func (p *pullDisplay) finish() {}

// layerLine is "ID: Status", with a bar and sizes while bytes move on a terminal.
func layerLine(ev api.ImagePullEvent, tty bool) string {
	s := ev.Layer + ": " + ev.Status
	if !tty || ev.Total <= 0 || (ev.Status != "Downloading" && ev.Status != "Pushing") {
		return s
	}
	const width = 40
	n := int(ev.Current * width / ev.Total)
	n = min(max(n, 0), width)
	bar := strings.Repeat("=", n)
	if n < width {
		bar += ">" + strings.Repeat(" ", width-n-1)
	}
	return fmt.Sprintf("%s [%s] %s/%s", s, bar, humanSize(ev.Current), humanSize(ev.Total))
}
