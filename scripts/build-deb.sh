#!/bin/bash
# Builds tollgate's Debian package from this repository, with one command:
#
#   scripts/build-deb.sh [-o DIR]
#
# writes DIR/tollgate_VERSION_ARCH.deb (default DIR: dist/) and prints its
# path. Needs go, a C compiler (gcc) and dpkg-deb (no root, no debhelper).
# The binary is built with cgo so that it signs through the system's OpenSSL
# (libcrypto.so.3, loaded at run time; the package depends on libssl3) and
# falls back to Go's crypto without it; README.md, "Signature crypto".
# The container image (deploy/container/Dockerfile) stays static, Go crypto.
#
#   VERSION         package and binary version (default: 0.0.0~gitDATE.COMMIT)
#   ARCH            Debian architecture (default: this machine's); amd64,
#                   arm64, armhf, i386, ppc64el, s390x, riscv64
#   DEB_MAINTAINER  the Maintainer field (default: the author of the commit
#                   built, "Name <address>")
#   CC              the C compiler for ARCH (default: gcc for this machine's
#                   architecture, else the Debian cross compiler, e.g.
#                   aarch64-linux-gnu-gcc from gcc-aarch64-linux-gnu)
#
# The package installs /usr/bin/tollgate, /lib/systemd/system/tollgate.service,
# /etc/tollgate/tollgate.yaml (a conffile: the example configuration), the
# manual pages tollgate(8) and tollgate.yaml(5) (deploy/man/), and the
# documentation and deployment examples in /usr/share/doc/tollgate/. Its
# maintainer scripts are deploy/debian/{postinst,prerm,postrm}. lintian finds
# nothing to report on it (deploy/package_test.go runs it).
set -euo pipefail

out=$(cd "$(dirname "$0")/.." && pwd)/dist
while [ $# -gt 0 ]; do
	case "$1" in
	-o | --output)
		out=${2:?"$1 needs a directory"}
		[[ $out == /* ]] || out=$PWD/$out
		shift 2
		;;
	-h | --help)
		sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
		exit 0
		;;
	*)
		echo "build-deb: unknown argument $1 (see --help)" >&2
		exit 2
		;;
	esac
done
cd "$(dirname "$0")/.."

if [ -z "${VERSION:-}" ]; then
	if stamp=$(git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S 2>/dev/null) &&
		commit=$(git rev-parse --short=12 HEAD 2>/dev/null); then
		VERSION="0.0.0~git$stamp.$commit"
	else
		VERSION=0.0.0~dev
	fi
fi
if ! [[ $VERSION =~ ^[0-9][A-Za-z0-9.+~]*(-[A-Za-z0-9.+~]+)?$ ]]; then
	echo "build-deb: VERSION $VERSION is not a Debian version (it must start with a digit)" >&2
	exit 2
fi
ARCH=${ARCH:-$(dpkg --print-architecture)}
goarm=
case "$ARCH" in
amd64 | arm64 | s390x | riscv64) goarch=$ARCH ;;
i386) goarch=386 ;;
armhf) goarch=arm goarm=7 ;;
ppc64el) goarch=ppc64le ;;
*)
	echo "build-deb: architecture $ARCH is not supported" >&2
	exit 2
	;;
esac
if [ "$ARCH" = "$(dpkg --print-architecture)" ]; then
	cc=${CC:-gcc}
else
	cc=${CC:-$(dpkg-architecture -a"$ARCH" -qDEB_HOST_GNU_TYPE 2>/dev/null)-gcc}
fi
if ! command -v "$cc" >/dev/null; then
	echo "build-deb: the cgo build needs a C compiler for $ARCH: $cc is not installed (Debian package gcc, or gcc-<triplet> for another architecture; or set CC)" >&2
	exit 2
fi
maintainer=${DEB_MAINTAINER:-$(git log -1 --format='%an <%ae>' 2>/dev/null || true)}
if ! [[ $maintainer =~ ^[^\<\>]+\ \<[^@\ ]+@[^@\ ]+\.[^@\ ]+\>$ ]]; then
	echo "build-deb: the Maintainer field needs \"Name <address>\": set DEB_MAINTAINER (not from git: \"$maintainer\")" >&2
	exit 2
fi
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
# Reproducible: file times are the commit's.
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
	export SOURCE_DATE_EPOCH
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
mkdir -p "$root/DEBIAN"

# The binary: the container's build command, with cgo for OpenSSL, as a
# position-independent executable with full RELRO as Debian hardens
# binaries. It links libc only: golang-fips/openssl dlopens libcrypto.so.3.
CGO_ENABLED=1 CC=$cc GOOS=linux GOARCH=$goarch GOARM=$goarm \
	go build -trimpath -buildmode=pie \
	-ldflags "-s -w -X main.version=$VERSION -extldflags=-Wl,-z,relro,-z,now" \
	-o "$root/usr/bin/tollgate" ./cmd/tollgate
# libc6 at least as new as the newest glibc symbol version the binary uses
# (what dpkg-shlibdeps would say; readelf reads any architecture's ELF).
glibc=$(readelf --version-info --wide "$root/usr/bin/tollgate" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1)
if [ -z "$glibc" ]; then
	echo "build-deb: no glibc symbol versions in the binary: is it linked with cgo?" >&2
	exit 1
fi

install -D -m 0644 deploy/systemd/tollgate.service "$root/lib/systemd/system/tollgate.service"
install -D -m 0644 deploy/examples/tollgate.yaml "$root/etc/tollgate/tollgate.yaml"
doc=$root/usr/share/doc/tollgate
install -D -m 0644 README.md "$doc/README.md"
# Beside the README there, not one directory down as in the repository.
sed 's#](\.\./README\.md#](README.md#g' docs/guide.md >"$doc/guide.md"
chmod 0644 "$doc/guide.md"
for f in deploy/examples/*; do
	install -D -m 0644 "$f" "$doc/examples/${f#deploy/examples/}"
done
for f in deploy/postfix/* deploy/sendmail/* deploy/nginx/* deploy/prometheus/*.yml deploy/grafana/*.json; do
	install -D -m 0644 "$f" "$doc/examples/${f#deploy/}"
done
year=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y)
first=$(git log --reverse --format=%cd --date=format:%Y 2>/dev/null | head -n 1 || true)
years=${first:-$year}
[ "$years" = "$year" ] || years=$years-$year
cat >"$doc/copyright" <<-EOF
	Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
	Upstream-Name: tollgate
	Source: https://github.com/tollgate/tollgate
	Comment: Built from the tollgate repository by scripts/build-deb.sh. The
	 binary links, statically, the Go modules listed by
	 "go version -m /usr/bin/tollgate", each under its own licence.

	Files: *
	Copyright: $years The tollgate authors
	License: tollgate
	 The tollgate repository does not name a licence yet. Until it does, this
	 package grants no rights beyond those the copyright holders give with it.
EOF
chmod 0644 "$doc/copyright"
# Debian's changelog for this build: native versions (no Debian revision)
# keep it in changelog.gz, others in changelog.Debian.gz.
changelog=changelog.Debian.gz
[[ $VERSION == *-* ]] || changelog=changelog.gz
{
	echo "tollgate ($VERSION) unstable; urgency=medium"
	echo
	echo "  * Built by scripts/build-deb.sh from commit $commit of the tollgate"
	echo "    repository; its history lists the changes."
	echo
	echo " -- $maintainer  $(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$doc/$changelog"
chmod 0644 "$doc/$changelog"
for page in deploy/man/*.[1-8]; do
	section=${page##*.}
	install -d "$root/usr/share/man/man$section"
	gzip -9n <"$page" >"$root/usr/share/man/man$section/${page##*/}.gz"
	chmod 0644 "$root/usr/share/man/man$section/${page##*/}.gz"
done
install -d "$root/usr/share/lintian/overrides"
cat >"$root/usr/share/lintian/overrides/tollgate" <<-'EOF'
	# Not uploaded to Debian: there is no ITP bug for a first version to close.
	tollgate: initial-upload-closes-no-bugs [usr/share/doc/tollgate/changelog.Debian.gz:1]
EOF
chmod 0644 "$root/usr/share/lintian/overrides/tollgate"
chmod 0755 "$root/usr/bin/tollgate"
find "$root" -type d -exec chmod 0755 {} +

install -m 0755 deploy/debian/postinst deploy/debian/prerm deploy/debian/postrm "$root/DEBIAN/"
echo /etc/tollgate/tollgate.yaml >"$root/DEBIAN/conffiles"
(cd "$root" && find usr lib -type f -print0 | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<EOF
Package: tollgate
Version: $VERSION
Architecture: $ARCH
Maintainer: $maintainer
Installed-Size: $size
Depends: adduser, libc6 (>= $glibc), libssl3 | libssl3t64
Suggests: postfix | sendmail-bin, spamd | rspamd, redis-server
Section: mail
Priority: optional
Description: milter daemon with Exim-style ACLs, ARC, SRS, DCC and spam verdicts
 tollgate attaches to Postfix or Sendmail as a milter. It works out who the
 SMTP client really is (also behind an nginx XCLIENT proxy) and applies a
 YAML policy shaped like Exim ACLs: accept, reject, defer, discard or drop
 mail and edit headers. It verifies and seals ARC chains, rewrites and
 reverses SRS addresses, asks DCC's dccifd for checksum and greylisting
 verdicts and spamd or rspamd for per-recipient verdicts, and exports
 Prometheus metrics.
EOF

mkdir -p "$out"
deb=$out/tollgate_${VERSION}_$ARCH.deb
# xz at a low level: within a few percent of the default size, three times faster.
dpkg-deb --root-owner-group -Zxz -z1 --build "$root" "$deb" >/dev/null
echo "$deb"
