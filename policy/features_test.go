package policy

import (
	"github.com/tollgate/tollgate/arc"
	"github.com/tollgate/tollgate/bmi"
	"github.com/tollgate/tollgate/dcc"
	"github.com/tollgate/tollgate/dkim"
	"github.com/tollgate/tollgate/dkimsign"
	"github.com/tollgate/tollgate/dmarc"
	"github.com/tollgate/tollgate/feature"
	"github.com/tollgate/tollgate/iprev"
	"github.com/tollgate/tollgate/spf"
	"github.com/tollgate/tollgate/srs/srsspec"
)

// testFeatures are the features cmd/tollgate is built with: the policy's
// tests load configurations that use them.
var testFeatures = []feature.Spec{srsspec.Spec, dcc.Spec, bmi.Spec, iprev.Spec, spf.Spec, dkim.Spec, dkimsign.Spec, arc.Spec, dmarc.Spec}
