package bmi

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// SplitOptins splits bmi_optin's colon-separated value: items are trimmed of
// blanks, empty ones dropped. There is no "::" escape: Exim hands the raw
// string to the SDK, which splits at every colon. Items of one byte are kept
// here and ignored by Evaluate and ProfileMap, as the seed ignores them.
func SplitOptins(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ":") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// maxOptinLine bounds a line of an opt-in file.
const maxOptinLine = 64 << 10

// LoadOptinFile reads an opt-in file: one recipient a line,
//
//	# comment
//	alice@example.org: spam-high:virus
//	bob@example.org:   spam-low
//
// Keys are compared case-insensitively (they are returned lower-cased, ASCII
// only, as Exim compares addresses); use LookupOptins. Blank lines and lines
// starting with # are skipped. Every problem is reported, each as file:line.
func LoadOptinFile(path string) (map[string][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bmi: optin file: %w", err)
	}
	defer f.Close()
	return ParseOptins(f, path)
}

// ParseOptins reads the opt-in file format from r; name is used in errors.
func ParseOptins(r io.Reader, name string) (map[string][]string, error) {
	out := make(map[string][]string)
	firstLine := make(map[string]int)
	var errs []error
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxOptinLine)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("bmi: %s:%d: %s", name, n, fmt.Sprintf(format, args...)))
		}
		key, value, ok := strings.Cut(line, ":")
		key = strings.TrimSpace(key)
		switch {
		case !ok:
			bad("want \"address: optin:optin\"")
			continue
		case key == "":
			bad("no address before the colon")
			continue
		case strings.ContainsAny(key, " \t\x00"):
			bad("address %q contains blanks", clip(key))
			continue
		case strings.ContainsRune(line, 0):
			bad("NUL in line")
			continue
		}
		key = asciiLower(key)
		if first, dup := firstLine[key]; dup {
			bad("%s already listed on line %d", key, first)
			continue
		}
		firstLine[key] = n
		out[key] = SplitOptins(value)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("line longer than %d bytes", maxOptinLine)
		}
		errs = append(errs, fmt.Errorf("bmi: %s:%d: %w", name, n+1, err))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// LookupOptins returns addr's opt-in strings from a loaded file.
func LookupOptins(m map[string][]string, addr string) []string { return m[asciiLower(addr)] }

func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
