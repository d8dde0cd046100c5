package srsspec

import (
	"reflect"
	"testing"

	"github.com/tollgate/tollgate/srs/store"
)

// The store's cache key covers every option: changing any one of them gives
// a different store on reload (issue 13, point 4: a new password_file or
// timeout used to be ignored).
func TestSRSStoreKeyCoversEveryOption(t *testing.T) {
	base := store.RedisOptions{Addr: "127.0.0.1:6379"}
	baseKey := (&database{redis: &base}).key()
	v := reflect.ValueOf(&base).Elem()
	for i := range v.NumField() {
		changed := base
		f := reflect.ValueOf(&changed).Elem().Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(f.String() + "x")
		case reflect.Int, reflect.Int64:
			f.SetInt(f.Int() + 1)
		default:
			t.Fatalf("option %s of kind %s: teach this test (and check the key covers it)", v.Type().Field(i).Name, f.Kind())
		}
		if (&database{redis: &changed}).key() == baseKey {
			t.Errorf("changing %s keeps the same store", v.Type().Field(i).Name)
		}
	}
	same := base
	if (&database{redis: &same}).key() != baseKey {
		t.Error("the same options give another store")
	}
}
