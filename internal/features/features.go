// Package features lists the features tollgate is built with: the daemon
// (cmd/tollgate) uses this list, and so does every test that loads a
// configuration the way the daemon does, so that a test can never run with a
// smaller set than the one shipped. Adding a feature is its package and one
// line here.
package features

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

// All are the features in the order they are listed in configuration
// errors; the modules run in the order their specs declare.
var All = []feature.Spec{
	srsspec.Spec,
	dcc.Spec,
	bmi.Spec,
	iprev.Spec,
	spf.Spec,
	dkim.Spec,
	dkimsign.Spec,
	arc.Spec,
	dmarc.Spec,
}
