package policy

import builtin "github.com/tollgate/tollgate/internal/features"

// testFeatures are those cmd/tollgate is built with.
var testFeatures = builtin.All
