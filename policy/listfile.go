package policy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// fileItemPrefix starts a list item that stands for the items of a file.
const fileItemPrefix = "file:"

// maxListFileBytes bounds what one file: item may make the daemon hold: a
// wrong path (a log, a disk image) gets an error instead of filling memory.
const maxListFileBytes = 64 << 20

type listFileLine struct {
	line int // 1-based, for messages
	text string
}

// readListFile reads the items of a file: item, one a line; blank lines and
// lines whose first non-blank character is "#" are skipped, and so is the
// rest of a line after a "#" that follows white space (as Exim does), so an
// item may carry a note.
func readListFile(path string) ([]listFileLine, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("%s%s: the path must be absolute (the daemon's working directory is not the configuration's)", fileItemPrefix, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s%s: %w", fileItemPrefix, path, unwrapPathError(err))
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s%s: not a regular file", fileItemPrefix, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxListFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s%s: %w", fileItemPrefix, path, unwrapPathError(err))
	}
	if len(data) > maxListFileBytes {
		return nil, fmt.Errorf("%s%s: larger than %d MiB", fileItemPrefix, path, maxListFileBytes>>20)
	}
	return parseListFile(data), nil
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// parseListFile splits the contents of a list file into items.
func parseListFile(data []byte) []listFileLine {
	var out []listFileLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, len(data)+1) // a line is never longer than the file
	for n := 1; sc.Scan(); n++ {
		text := strings.TrimSpace(stripNote(sc.Text()))
		if strings.HasPrefix(text, "#") {
			continue
		}
		if text != "" {
			out = append(out, listFileLine{line: n, text: text})
		}
	}
	return out
}

// stripNote cuts a line at the first "#" that follows white space.
func stripNote(text string) string {
	for i := 1; i < len(text); i++ {
		if text[i] == '#' && (text[i-1] == ' ' || text[i-1] == '\t') {
			return text[:i]
		}
	}
	return text
}
