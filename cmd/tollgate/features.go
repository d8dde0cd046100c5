package main

import builtin "github.com/tollgate/tollgate/internal/features"

// features are the features this build of tollgate has (internal/features,
// the one list the tests load configurations with too).
var features = builtin.All
