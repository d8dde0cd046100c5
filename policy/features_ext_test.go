package policy_test

import (
	"github.com/tollgate/tollgate/dcc"
	"github.com/tollgate/tollgate/feature"
)

// testFeatures are the features cmd/tollgate is built with.
var testFeatures = []feature.Spec{dcc.Spec}
