package arc

import (
	"errors"
	"fmt"

	"github.com/tollgate/tollgate/internal/authres"
)

// parseAAR parses the "i=N;" prefix of an ARC-Authentication-Results value
// (RFC 8617 §4.1.1: arc-info = instance [CFWS] ";" authres-payload) and
// checks that an authserv-id follows.
func parseAAR(value string) (int, error) {
	i, err := authres.SkipCFWS(value, 0)
	if err != nil {
		return 0, err
	}
	if i == len(value) || value[i] != 'i' {
		return 0, errors.New("does not start with i=")
	}
	if i, err = authres.SkipCFWS(value, i+1); err != nil {
		return 0, err
	}
	if i == len(value) || value[i] != '=' {
		return 0, errors.New("does not start with i=")
	}
	if i, err = authres.SkipCFWS(value, i+1); err != nil {
		return 0, err
	}
	start := i
	for i < len(value) && isDigit(value[i]) {
		i++
	}
	inst, ok := parseInstance(value[start:i])
	if !ok {
		return 0, fmt.Errorf("bad instance %q", value[start:i])
	}
	if i, err = authres.SkipCFWS(value, i); err != nil {
		return 0, err
	}
	if i == len(value) || value[i] != ';' {
		return inst, errors.New("no ';' after i=")
	}
	if _, _, err := authres.Split(value[i+1:]); err != nil {
		return inst, err
	}
	return inst, nil
}
