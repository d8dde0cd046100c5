package seamtest

import (
	"github.com/tollgate/tollgate/dcc"
	"github.com/tollgate/tollgate/feature"
)

// features are those cmd/tollgate is built with.
var features = []feature.Spec{dcc.Spec}
