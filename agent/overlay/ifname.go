package overlay

import (
	"fmt"
	"slices"
)

// freeIfName picks the first ethN that is neither in the namespace nor in taken.
func (d *Driver) freeIfName(path string, taken []string) (string, error) {
	names, err := d.links(path)
	if err != nil {
		return "", err
	}
	names = append(names, taken...)
	for i := 0; ; i++ {
		n := fmt.Sprintf("eth%d", i)
		if !slices.Contains(names, n) {
			return n, nil
		}
	}
}
