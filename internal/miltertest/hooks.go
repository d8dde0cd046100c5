package miltertest

import (
	"context"

	"github.com/tollgate/tollgate/milter"
)

// Body plays the part of the milter between the last header field and the
// end-of-message hooks, for tests that call a module's hooks themselves:
// the EndOfHeaders hooks (where modules ask for body hashes), then each
// chunk to the shared body hashes and to the Body hooks, then the end of
// the body (every hash gets its Sum). Hook errors are the test's to see
// through the module's results, as the milter keeps them for later.
func Body(ctx context.Context, tx *milter.Txn, mods []milter.Module, chunks ...[]byte) {
	for _, m := range mods {
		if h, ok := m.(milter.EndOfHeadersHook); ok {
			_ = h.EndOfHeaders(ctx, tx)
		}
	}
	for _, c := range chunks {
		tx.WriteBody(c)
		for _, m := range mods {
			if h, ok := m.(milter.BodyHook); ok {
				_ = h.Body(ctx, tx, c)
			}
		}
	}
	tx.EndBody()
}
