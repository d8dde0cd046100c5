#!/bin/bash
# Installs what the end-to-end and interoperability tests need on Debian 12:
#   postfix                  postfix, smtp-sink (private instances per test)
#   swaks                    the SMTP client the tests drive
#   libio-socket-inet6-perl  swaks' IPv6 support (a Recommends we do not pull)
#   python3-dkim python3-authres python3-dnspython
#                            dkimpy: an independent ARC signer and verifier (arc/),
#                            and a DKIM signer (RSA and Ed25519) for dkim/
#   libmail-dkim-perl libnet-dns-resolver-mock-perl
#                            Mail::DKIM: another ARC implementation, with offline DNS (arc/)
#   opendkim opendkim-tools  OpenDKIM's opendkim-testmsg verifies tollgate's DKIM signatures (dkimsign/)
#   opendkim                 OpenDKIM: its test mode (-t) signs the messages tollgate's
#                            DKIM verifier must pass (dkim/)
#   postsrsd libmail-srs-perl srs redis-server
#                            two independent SRS implementations (srs/) and the Redis
#                            of SRS database mode; the srs
#                            command of Mail::SRS is in its own package "srs"
#   nginx libnginx-mod-mail  a private nginx mail proxy that speaks XCLIENT to Postfix
#   m4                       builds the private Sendmail's sendmail.cf
#   gcc libc6-dev            cgo (libc6-dev is only a Recommends of gcc), for the BoringCrypto
#                            build and the OpenSSL build of the daemon
#                            (scripts/build-deb.sh, internal/sigcrypto); binutils' readelf
#   libssl3                  libcrypto.so.3, which the cgo build loads at run time to sign
#                            (internal/sigcrypto); no headers needed (no libssl-dev)
#   spamassassin spamd spamc rspamd
#                            the real scanners behind per-recipient verdicts (bmi/)
#   prometheus               promtool: checks and unit-tests the alert rules (deploy/);
#                            Debian packs it with the server (19 MB, about 20 s)
#   systemd strace file      systemd-analyze checks the unit (no systemd needs to run),
#                            strace the system calls its filter must allow, file the
#                            static binary (deploy/)
#   lintian man-db           lintian checks the Debian package (deploy/), man reads
#                            the manual pages (internal/manpage)
#   opendmarc                OpenDMARC 1.4.2, the DMARC peer run as a milter (dmarc/)
#   rsyslog                  a private rsyslogd takes the daemon's log.syslog lines (cmd/tollgate);
#                            the package's own service is not needed
# and downloads, without installing, Sendmail's packages into
# /var/cache/tollgate-tests/sendmail/ (sendmail-bin conflicts with postfix:
# the e2e tests unpack them into a private prefix, see internal/e2e/sendmail.go).
# Idempotent; prints one line saying what it did.
set -euo pipefail

packages=(postfix swaks libio-socket-inet6-perl
	python3-dkim python3-authres python3-dnspython libmail-dkim-perl libnet-dns-resolver-mock-perl opendkim opendkim-tools
	postsrsd libmail-srs-perl srs redis-server
	nginx libnginx-mod-mail m4
	gcc libc6-dev libssl3 spamassassin spamd spamc rspamd
	prometheus systemd strace file lintian man-db rsyslog tinycdb lmdb-utils opendmarc python3-spf)

# Downloaded, never installed. Keep in step with sendmailDebs in
# internal/e2e/sendmail.go.
sendmail_debs=(sendmail-bin sendmail-base sendmail-cf libwrap0)
sendmail_cache=/var/cache/tollgate-tests/sendmail

if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		exec sudo -- "$0" "$@"
	fi
	echo "install-test-deps: must run as root (and sudo is not available)" >&2
	exit 1
fi

cleanup=()
trap 'rm -rf "${cleanup[@]}"' EXIT

missing=()
for p in "${packages[@]}"; do
	if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
		missing+=("$p")
	fi
done

did=()
if [ "${#missing[@]}" -gt 0 ]; then
	log=$(mktemp)
	cleanup+=("$log")
	# Answer the questions postfix would ask: no network-facing setup.
	debconf-set-selections <<-'EOF'
		postfix postfix/main_mailer_type select Local only
		postfix postfix/mailname string tollgate.test
	EOF
	if ! { apt-get update &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
		cat "$log" >&2
		echo "install-test-deps: installing ${missing[*]} failed" >&2
		exit 1
	fi
	did+=("installed ${missing[*]}")
fi

# The package starts the default instance, which holds port 25 and is of no
# use to the tests: each test runs its own private instance.
if postfix status >/dev/null 2>&1; then
	postfix stop >/dev/null 2>&1 || service postfix stop >/dev/null 2>&1 || true
	did+=("stopped the default postfix instance")
fi
# Likewise nginx, which holds port 80; the tests run private nginx processes.
if [ -s /run/nginx.pid ] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; then
	service nginx stop >/dev/null 2>&1 || /usr/sbin/nginx -s quit >/dev/null 2>&1 || true
	did+=("stopped the default nginx service")
fi

# The scanners' own services are of no use either: the tests start private
# spamd and rspamd processes on free ports. Nor is Prometheus' server: the
# tests use only promtool.
for svc in spamd spamassassin rspamd prometheus; do
	service "$svc" stop >/dev/null 2>&1 || true
done

# download_debs CACHE PKG...: one .deb per package in CACHE, downloaded
# and never installed (the tests unpack them privately); the tests need no
# apt at run time. A fresh machine's package lists may be empty: update them
# once if apt knows no candidate.
download_debs() {
	local cache=$1
	shift
	local stale=() p log tmp
	for p in "$@"; do
		if ! compgen -G "$cache/${p}_*.deb" >/dev/null; then
			stale+=("$p")
		fi
	done
	[ "${#stale[@]}" -gt 0 ] || return 0
	log=$(mktemp)
	tmp=$(mktemp -d)
	cleanup+=("$log" "$tmp")
	if ! apt-cache policy "$1" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
		apt-get update >"$log" 2>&1 || { cat "$log" >&2; echo "install-test-deps: apt-get update failed" >&2; exit 1; }
	fi
	# apt-get download writes into the working directory; as root it warns
	# that the download is unsandboxed unless _apt can write there.
	chmod 755 "$tmp"
	chown _apt "$tmp" 2>/dev/null || true
	if ! (cd "$tmp" && apt-get download "$@") >"$log" 2>&1; then
		cat "$log" >&2
		echo "install-test-deps: downloading $* failed" >&2
		exit 1
	fi
	mkdir -p "$cache"
	rm -f "$cache"/*.deb
	mv "$tmp"/*.deb "$cache"/
	chmod 644 "$cache"/*.deb
	did+=("downloaded $* into $cache")
}

download_debs "$sendmail_cache" "${sendmail_debs[@]}"

# Exim 4.96 (srs/: its native SRS scheme), downloaded and never installed
# (exim4-daemon-heavy conflicts with postfix): the e2e tests unpack the debs
# into a private directory, as for Sendmail. Exim refuses to run without its
# system user Debian-exim, which the package would have made. Keep in step
# with eximDebs in srs/exim_e2e_test.go.
exim_debs=(exim4-daemon-heavy exim4-base exim4-config libmariadb3 libidn12 libspf2-2 mariadb-common)
exim_cache=/var/cache/tollgate-tests/exim
download_debs "$exim_cache" "${exim_debs[@]}"
if ! getent passwd Debian-exim >/dev/null; then
	useradd --system --user-group --no-create-home --home-dir /var/spool/exim4 --shell /usr/sbin/nologin Debian-exim
	did+=("added the system user Debian-exim")
fi

# faketime: runs the private Exim at a fixed date, so that the SRS tests
# compare its srs_encode on chosen days (day 0 of the stamp cycle, one-letter
# stamps, old stamps) and not only today's.
if [ "$(dpkg-query -W -f='${Status}' faketime 2>/dev/null)" != "install ok installed" ]; then
	log=$(mktemp)
	cleanup+=("$log")
	if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends faketime; } >"$log" 2>&1; then
		cat "$log" >&2
		echo "install-test-deps: installing faketime failed" >&2
		exit 1
	fi
	did+=("installed faketime")
fi

if [ "${#did[@]}" -eq 0 ]; then
	echo "install-test-deps: nothing to do, ${packages[*]} already installed, Sendmail's packages in $sendmail_cache, Exim's in $exim_cache"
else
	msg=$(printf '%s; ' "${did[@]}")
	echo "install-test-deps: ${msg%; }"
fi
