package cdb

import (
	"bytes"
	"os"
	"testing"
)

// testdata/small.cdb was made by Debian's tinycdb:
// cdb -c -m testdata/small.cdb testdata/small.txt
func TestReadsTinycdbFile(t *testing.T) {
	db, err := Open("testdata/small.cdb")
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"example.org": "1", "example.net": "relay", "alice@example.com": "1",
		"192.0.2.7": "old relay", "2001:db8::25": "1", "same": "first", "empty-value": "",
	} {
		got, ok := db.Get(key)
		if !ok || string(got) != want {
			t.Errorf("Get(%q) = %q, %v; want %q", key, got, ok, want)
		}
	}
	for _, key := range []string{"", "example", "Example.org", "example.org.", "192.0.2.8", "same "} {
		if _, ok := db.Get(key); ok {
			t.Errorf("Get(%q) found a key that is not there", key)
		}
	}
}

func TestRejectsWhatIsNotCdb(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string][]byte{
		"short":      []byte("example.org\n"),
		"table-past": append(append([]byte{0xff, 0xff, 0, 0, 1, 0, 0, 0}, make([]byte, headerSize-8)...), 0),
	} {
		path := dir + "/" + name
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(path); err == nil {
			t.Errorf("%s: opened", name)
		}
	}
	if _, err := Open(dir + "/none"); err == nil {
		t.Error("missing file opened")
	}
	if _, err := Open(dir); err == nil {
		t.Error("directory opened")
	}
}

// FuzzGet: no database, however corrupt, may make a lookup panic or return
// bytes from outside the file.
func FuzzGet(f *testing.F) {
	small, err := os.ReadFile("testdata/small.cdb")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(small, "example.org")
	f.Add(small, "missing")
	f.Add(make([]byte, headerSize), "")
	f.Fuzz(func(t *testing.T, data []byte, key string) {
		db, err := New(data)
		if err != nil {
			return
		}
		if v, ok := db.Get(key); ok && len(v) > 0 && !bytes.Contains(data, v) {
			t.Fatalf("value %q not in the file", v)
		}
	})
}
