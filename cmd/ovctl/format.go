package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"text/template"
	"unicode"
)

// templateFuncs are docker's template functions (github.com/docker/cli/templates): json, split, join,
// title, lower, upper, pad, truncate and println.
var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	"split": strings.Split,
	"join":  strings.Join,
	"title": func(s string) string {
		r := []rune(s)
		if len(r) > 0 {
			r[0] = unicode.ToUpper(r[0])
		}
		return string(r)
	},
	"lower": strings.ToLower,
	"upper": strings.ToUpper,
	"pad": func(s string, before, after int) string {
		return strings.Repeat(" ", before) + s + strings.Repeat(" ", after)
	},
	"truncate": func(s string, n int) string {
		if r := []rune(s); len(r) > n {
			return string(r[:n])
		}
		return s
	},
	"println": fmt.Sprintln,
}

// formatter writes rows as --format asks, the way docker reads the flag: "" or "table" is the
// command's default table; "json" is each row as one line of JSON; "table TEMPLATE" is a table of
// TEMPLATE's cells (separated by \t) under a header of the fields' column names; any other TEMPLATE is
// executed for each row, a line each (a Go text/template, with docker's functions).
type formatter struct {
	tmpl    *template.Template // nil: json
	table   bool
	headers map[string]string // field name -> column header
}

// parseFormat reads a --format value; def is the template of the command's default table and
// headers the column headers of its fields.
func parseFormat(format, def string, headers map[string]string) (*formatter, error) {
	f := &formatter{headers: headers}
	switch {
	case format == "json":
		return f, nil
	case format == "" || format == "table":
		format, f.table = def, true
	case strings.HasPrefix(format, "table ") || strings.HasPrefix(format, "table\t"):
		format, f.table = format[len("table "):], true
	}
	// Docker takes the escapes \t and \n as typed in a shell.
	format = strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(format)
	t, err := template.New("format").Funcs(templateFuncs).Parse(format)
	if err != nil {
		return nil, &exitError{code: 1, err: fmt.Errorf("--format: template parsing error: %v", err)}
	}
	f.tmpl = t
	return f, nil
}

// write renders rows to w.
func (f *formatter) write(w io.Writer, rows []any) error {
	if f.tmpl == nil {
		for _, r := range rows {
			b, err := json.Marshal(r)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "%s\n", b)
		}
		return nil
	}
	out := w
	var tw *tabwriter.Writer
	if f.table {
		tw = tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
		out = tw
		// The header is the template run on the column names (docker's way); a template that
		// cannot run on them (a function that wants another type) gets none.
		var h bytes.Buffer
		ht, _ := f.tmpl.Clone()
		if err := ht.Option("missingkey=zero").Execute(&h, f.headers); err == nil {
			fmt.Fprintln(tw, strings.TrimRight(h.String(), "\n"))
		}
	}
	for _, r := range rows {
		var b bytes.Buffer
		if err := f.tmpl.Execute(&b, r); err != nil {
			return &exitError{code: 1, err: fmt.Errorf("--format: template: %v", err)}
		}
		fmt.Fprintln(out, strings.TrimRight(b.String(), "\n"))
	}
	if tw != nil {
		return tw.Flush()
	}
	return nil
}

// writeFormatted renders rows with format (see formatter), def and headers as parseFormat takes them.
func writeFormatted(w io.Writer, format, def string, headers map[string]string, rows []any) error {
	f, err := parseFormat(format, def, headers)
	if err != nil {
		return err
	}
	return f.write(w, rows)
}

// toRows converts a slice to the []any that writeFormatted takes.
func toRows[T any](s []T) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}
