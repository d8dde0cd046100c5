#!/bin/bash
# Installs what the end-to-end and interoperability tests need on Debian 12:
#   postfix                  postfix, smtp-sink (private instances per test)
#   swaks                    the SMTP client the tests drive
#   libio-socket-inet6-perl  swaks' IPv6 support (a Recommends we do not pull)
#   python3-dkim python3-authres python3-dnspython
#                            dkimpy: an independent ARC signer and verifier (arc/)
#   libmail-dkim-perl libnet-dns-resolver-mock-perl
#                            Mail::DKIM: another ARC implementation, with offline DNS (arc/)
#   postsrsd libmail-srs-perl
#                            two independent SRS implementations (srs/)
# Idempotent; prints one line saying what it did.
set -euo pipefail

packages=(postfix swaks libio-socket-inet6-perl
	python3-dkim python3-authres python3-dnspython libmail-dkim-perl libnet-dns-resolver-mock-perl
	postsrsd libmail-srs-perl)

if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		exec sudo -- "$0" "$@"
	fi
	echo "install-test-deps: must run as root (and sudo is not available)" >&2
	exit 1
fi

missing=()
for p in "${packages[@]}"; do
	if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
		missing+=("$p")
	fi
done

did=()
if [ "${#missing[@]}" -gt 0 ]; then
	log=$(mktemp)
	trap 'rm -f "$log"' EXIT
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

if [ "${#did[@]}" -eq 0 ]; then
	echo "install-test-deps: nothing to do, ${packages[*]} already installed"
else
	msg=$(printf '%s; ' "${did[@]}")
	echo "install-test-deps: ${msg%; }"
fi
