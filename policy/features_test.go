package policy

import (
	"github.com/tollgate/tollgate/dcc"
	"github.com/tollgate/tollgate/feature"
)

// testFeatures are the features cmd/tollgate is built with: the policy's
// tests load configurations that use them.
var testFeatures = []feature.Spec{dcc.Spec}
