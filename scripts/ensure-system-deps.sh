#!/usr/bin/env bash
# Make sure the server binaries and tool chains the test harness launches
# exist: PostgreSQL's initdb/pg_ctl, redis-server, vsftpd, a Java runtime and
# Maven (Apache Kafka 4 and s3proxy come from Maven Central as jars), and Go
# (fake-gcs-server is built with `go install`). On Debian/Ubuntu the missing packages are
# installed with apt-get. No service is started, now or at install time: the
# harness (dtpyfw.testing) starts its own servers on free ports when needed.
# When everything is present this does nothing and returns at once.
set -euo pipefail

have_postgres() {
    command -v initdb >/dev/null 2>&1 && return 0
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

have_redis() {
    command -v redis-server >/dev/null 2>&1
}

have() { command -v "$1" >/dev/null 2>&1; }

have_vsftpd() {
    have vsftpd || [[ -x /usr/sbin/vsftpd ]]
}

have_java() {
    [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]] || have java
}

missing=()
have_postgres || missing+=(postgresql)
have_redis || missing+=(redis-server)
have_vsftpd || missing+=(vsftpd)
have_java || missing+=(default-jre-headless)
have mvn || missing+=(maven)
have go || missing+=(golang-go)

if ((${#missing[@]} == 0)); then
    echo "ensure-system-deps: found initdb, redis-server, vsftpd, java, mvn and go; nothing to install"
    exit 0
fi

fail() {
    echo "ensure-system-deps: $*" >&2
    exit 1
}

command -v apt-get >/dev/null 2>&1 ||
    fail "missing ${missing[*]}, and apt-get is not available: install them with your package manager"

if ((EUID == 0)); then
    as_root() { "$@"; }
elif command -v sudo >/dev/null 2>&1; then
    as_root() { sudo "$@"; }
else
    fail "missing ${missing[*]}: run this as root or install sudo"
fi

# Package scripts start services through invoke-rc.d / deb-systemd-invoke; a
# policy-rc.d that answers 101 ("action forbidden") keeps them stopped. An
# existing policy (Docker images ship one) is left as it is.
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod 755 "$policy"
    trap 'as_root rm -f "$policy"' EXIT
fi

# apt-get's chatter goes to a log, shown only when it fails. sudo resets the
# environment, so DEBIAN_FRONTEND is passed through env.
log=$(mktemp)
apt=(env DEBIAN_FRONTEND=noninteractive apt-get -q)
if ! {
    as_root "${apt[@]}" update &&
        as_root "${apt[@]}" install -y --no-install-recommends "${missing[@]}"
} >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    fail "apt-get could not install ${missing[*]}"
fi
rm -f "$log"

have_postgres || fail "installed postgresql but found no initdb under /usr/lib/postgresql/*/bin"
have_redis || fail "installed redis-server but it is not on PATH"
have_vsftpd || fail "installed vsftpd but found no vsftpd binary"
have_java || fail "installed a JRE but java is not on PATH"
have mvn || fail "installed maven but mvn is not on PATH"
have go || fail "installed golang-go but go is not on PATH"
echo "ensure-system-deps: installed ${missing[*]} (services left stopped)"
