package srs

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxSecretsFile bounds what ReadSecretsFile reads: a secrets file is a few
// lines; anything bigger is the wrong file.
const maxSecretsFile = 1 << 20

// ReadSecretsFile reads one secret per line, first line first (it signs; all
// verify). Line endings (LF or CRLF) are stripped and nothing else: spaces
// inside or around a secret are part of it, as in postsrsd. Blank lines and
// lines whose first non-blank character is # are skipped (postsrsd would take
// a # line as a secret; Mail::SRS's srs --secretfile keeps the newline in the
// secret, giving different hashes).
//
// The file must be a regular file with no access for group or others: a
// readable secret lets anyone who reads it forge bounce paths through us, a
// writable one lets them plant their own.
func ReadSecretsFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("srs: secrets file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("srs: secrets file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("srs: secrets file %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("srs: secrets file %s: mode %04o gives group or others access; it must be readable by its owner only (chmod 600 %s)", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSecretsFile+1))
	if err != nil {
		return nil, fmt.Errorf("srs: secrets file %s: %w", path, err)
	}
	if len(data) > maxSecretsFile {
		return nil, fmt.Errorf("srs: secrets file %s: larger than %d bytes", path, maxSecretsFile)
	}
	var secrets []string
	for line := range bytes.Lines(data) {
		s := strings.TrimRight(string(line), "\r\n")
		trimmed := strings.TrimLeft(s, " \t")
		if strings.TrimSpace(s) == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		secrets = append(secrets, s)
	}
	if len(secrets) == 0 {
		return nil, fmt.Errorf("srs: secrets file %s: no secrets in it", path)
	}
	return secrets, nil
}
