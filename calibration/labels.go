package calibration

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ReadLabels reads --labels: one integer class per line, in sample order. Blank lines are
// skipped (a trailing newline or a spacer is harmless); anything else that is not an
// integer is an error naming its line, because a silently shifted label list would make
// every accuracy figure wrong.
func ReadLabels(path string) ([]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []int
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" {
			continue
		}
		v, err := strconv.Atoi(s)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %q is not an integer label", path, line, s)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}
