# Shared helpers for the provisioning recipes. Sourced, never run.
# Every recipe gets OUT (a fresh staging directory that becomes the artefact on
# success) and CACHE (the cache root) from ocssd_vfu/guest/provision.py.
set -euo pipefail

die() { echo "error: $*" >&2; exit 1; }

# The Debian mirror this machine already uses, read from its own apt sources so
# that no registry host is ever written into the repository.
mirror_uri() {
    local uri=""
    if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
        uri=$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources \
              | awk '{print $2}' | grep -v -- '-security' | head -n1 || true)
    fi
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri=$(awk '$1=="deb" && $0 !~ /security/ {for(i=2;i<=NF;i++) if ($i ~ /:\/\//) {print $i; exit}}' \
              /etc/apt/sources.list || true)
    fi
    [ -n "$uri" ] || die "cannot find a Debian mirror in /etc/apt/sources.list{,.d}"
    echo "${uri%/}"
}

# apt with private sources and state under $CACHE/apt: the system's apt
# configuration and package lists are never touched.
PAPT_DIR="${CACHE:?}/apt"
papt_opts() {
    echo -o "Dir::Etc::sourcelist=$PAPT_DIR/sources.list" -o Dir::Etc::sourceparts=- \
         -o "Dir::State::Lists=$PAPT_DIR/lists" -o "Dir::Cache=$PAPT_DIR/cache" \
         -o "Dir::State::status=$PAPT_DIR/status" -o Acquire::Check-Valid-Until=false \
         -o APT::Default-Release=bookworm -o Debug::NoLocking=1 -o APT::Sandbox::User=root
}
papt() { apt-get $(papt_opts) "$@"; }

# Refresh the private indices at most once per hour (the mirror is a snapshot).
papt_update() {
    local stamp="$PAPT_DIR/updated"
    mkdir -p "$PAPT_DIR/lists/partial" "$PAPT_DIR/cache/archives/partial"
    local m; m=$(mirror_uri)
    cat > "$PAPT_DIR/sources.list.new" <<SRC
deb $m bullseye main
deb $m bookworm main
deb-src $m trixie main
SRC
    touch "$PAPT_DIR/status"
    if cmp -s "$PAPT_DIR/sources.list.new" "$PAPT_DIR/sources.list" \
       && [ -n "$(find "$stamp" -mmin -60 2>/dev/null)" ]; then
        rm -f "$PAPT_DIR/sources.list.new"; return 0
    fi
    mv "$PAPT_DIR/sources.list.new" "$PAPT_DIR/sources.list"
    papt update -q >/dev/null || die "apt-get update on the private sources failed"
    touch "$stamp"
}

# Download a package (apt's name/suite syntax) into the shared deb cache once
# and print the .deb's path.
papt_fetch() {
    local debs="$PAPT_DIR/debs" name="${1%%/*}"
    mkdir -p "$debs"
    if ! compgen -G "$debs/${name}_*.deb" >/dev/null; then
        (cd "$debs" && papt download -q "$1" >&2) || die "could not download $1"
    fi
    ls "$debs/${name}"_*.deb | head -n1
}
