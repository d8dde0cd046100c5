package seamtest

import builtin "github.com/tollgate/tollgate/internal/features"

// features are those cmd/tollgate is built with.
var features = builtin.All
