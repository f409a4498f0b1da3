#!/usr/bin/env bash
# Install the FieldLink agent as a systemd service on a Raspberry Pi (Raspberry Pi OS 32/64-bit, Debian 12+).
#
#   sudo agent/install/install-pi.sh                 # or: sudo make install-pi
#   sudo agent/install/install-pi.sh --uninstall     # keeps /etc/fieldlink and /var/lib/fieldlink
#
# Safe to run again: it creates what is missing, updates the program and the unit, and never overwrites
# /etc/fieldlink/fieldlink.toml. Runtime dependencies are installed from wheels only
# (pip --only-binary=:all:), so a dependency without a wheel for this machine fails here, loudly, instead
# of trying to compile on the Pi. See docs/install-pi.md.
set -euo pipefail
umask 022    # the venv must stay readable by the service user whatever root's umask is

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CHECKOUT=$(cd "$HERE/../.." && pwd)

SERVICE=fieldlink
SERVICE_USER=fieldlink
SERIAL_GROUP=dialout
ETC_DIR=/etc/fieldlink
CONFIG=$ETC_DIR/fieldlink.toml
STATE_DIR=/var/lib/fieldlink
OUTBOX=$STATE_DIR/outbox.sqlite
UNIT_DIR=/etc/systemd/system
LINK=/usr/local/bin/fieldlink
UNIT_TEMPLATE=$HERE/fieldlink.service
DEFAULT_PREFIX=/opt/fieldlink

ROOT=/
PREFIX=$DEFAULT_PREFIX
SOURCE=$CHECKOUT
CONFIG_SOURCE=$CHECKOUT/agent/examples/site.toml
PYTHON=python3
FIELDLINK=""
NO_VENV=0
DRY_RUN=0
BUILD_DIR=""
UNINSTALL=0

usage() {
    cat <<EOF
Usage: sudo $0 [options]

Installs FieldLink as the systemd service "$SERVICE": user $SERVICE_USER (group $SERIAL_GROUP), venv
$DEFAULT_PREFIX, config $CONFIG (from the example, only if absent), outbox $OUTBOX.

Options:
  --source PATH     FieldLink checkout or wheel (.whl) to install (default: $CHECKOUT)
  --config FILE     config to install when $CONFIG does not exist yet
                    (default: agent/examples/site.toml, outbox path set to $OUTBOX)
  --python PY       Python 3.11+ used for the venv (default: python3)
  --prefix DIR      where the venv goes (default: $DEFAULT_PREFIX)
  --root DIR        staging root: write every file under DIR; no user, no chown, no systemctl
  --no-venv         do not create or update the venv (with --fieldlink for the config check)
  --fieldlink PATH  fieldlink program used for "check-config" (default: the venv's)
  --dry-run         print what would be done, change nothing
  --uninstall       stop and remove the service, the venv and the command link;
                    keep the config, the outbox and the user
  -h, --help        this help
EOF
}

die() { printf 'install-pi: error: %s\n' "$*" >&2; exit 1; }
say() { printf 'install-pi: %s\n' "$*"; }

DONE=()
did() { DONE+=("$*"); }

# run CMD...: print the command, then run it (or only print it with --dry-run).
run() {
    local quoted
    quoted=$(printf '%q ' "$@")
    if [ "$DRY_RUN" = 1 ]; then
        printf '  would run: %s\n' "${quoted% }"
    else
        printf '  + %s\n' "${quoted% }"
        "$@"
    fi
}

while [ $# -gt 0 ]; do
    opt=$1
    case $opt in
        --*=*) set -- "${opt%%=*}" "${opt#*=}" "${@:2}"; continue ;;
    esac
    case $opt in
        --source|--config|--python|--prefix|--root|--fieldlink)
            [ $# -ge 2 ] || die "$opt needs a value"
            case $opt in
                --source) SOURCE=$2 ;;
                --config) CONFIG_SOURCE=$2 ;;
                --python) PYTHON=$2 ;;
                --prefix) PREFIX=$2 ;;
                --root) ROOT=$2 ;;
                --fieldlink) FIELDLINK=$2 ;;
            esac
            shift 2 ;;
        --no-venv) NO_VENV=1; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        --uninstall) UNINSTALL=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $opt" ;;
    esac
done

PREFIX=${PREFIX%/}
case $PREFIX in
    /*[!A-Za-z0-9._/-]*) die "--prefix: only letters, digits and . _ - / please, got: $PREFIX" ;;
    /?*) ;;
    *) die "--prefix must be an absolute path other than /, got: ${PREFIX:-/}" ;;
esac
case $ROOT in
    /*) ;;
    *) ROOT=$(pwd)/$ROOT ;;
esac
ROOT=${ROOT%/}
STAGING=0
[ -n "$ROOT" ] && STAGING=1

# at PATH: where PATH of the target system is on this machine (under the staging root).
at() { printf '%s%s' "$ROOT" "$1"; }

if [ "$STAGING" = 1 ]; then
    say "staging into $ROOT: no user, no ownership changes, no systemctl"
elif [ "$DRY_RUN" = 0 ]; then
    [ "$(id -u)" = 0 ] || die "run as root: sudo $0  (or add --dry-run to see what it would do)"
    command -v systemctl >/dev/null || die "systemctl not found: this installer needs systemd"
fi
[ "$DRY_RUN" = 1 ] && say "dry run: nothing is changed"

# ---------------------------------------------------------------------------------------------------------
uninstall() {
    local unit venv link
    unit=$(at "$UNIT_DIR/$SERVICE.service")
    venv=$(at "$PREFIX")
    link=$(at "$LINK")
    if [ "$STAGING" = 0 ] && [ -e "$unit" ]; then
        run systemctl disable --now "$SERVICE.service" || true
        did "stopped and disabled $SERVICE.service"
    fi
    if [ -e "$unit" ]; then
        run rm -f "$unit"
        did "removed $UNIT_DIR/$SERVICE.service"
        [ "$STAGING" = 1 ] || run systemctl daemon-reload
    fi
    if [ -L "$link" ] && [ "$(readlink "$link")" = "$PREFIX/bin/fieldlink" ]; then
        run rm -f "$link"
        did "removed the command link $LINK"
    fi
    if [ -e "$venv/pyvenv.cfg" ]; then
        run rm -rf "$venv"
        did "removed the venv $PREFIX"
    elif [ -e "$venv" ]; then
        say "left $PREFIX alone: it is not a venv (no pyvenv.cfg)"
    fi
    summary
    cat <<EOF

Kept: $CONFIG (config), $STATE_DIR (outbox: packs not yet published are still in it), user $SERVICE_USER.
To remove those too:  sudo userdel $SERVICE_USER && sudo rm -r $ETC_DIR $STATE_DIR
EOF
}

summary() {
    printf '\ninstall-pi: done%s:\n' "$([ "$DRY_RUN" = 1 ] && printf ' (dry run, nothing changed)')"
    if [ ${#DONE[@]} -eq 0 ]; then
        printf '  - nothing to do\n'
    else
        printf '  - %s\n' "${DONE[@]}"
    fi
}

# ---------------------------------------------------------------------------------------------------------
check_python() {
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found: sudo apt-get install python3 python3-venv"
    "$PYTHON" - <<'EOF' || die "FieldLink needs Python 3.11 or newer; $PYTHON is $("$PYTHON" -V 2>&1). Raspberry Pi OS 12 (bookworm) or newer has it; or pass --python"
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
EOF
    if [ "$NO_VENV" = 0 ]; then
        "$PYTHON" -c 'import venv, ensurepip, sqlite3' 2>/dev/null \
            || die "$PYTHON cannot create a venv: sudo apt-get install python3-venv"
    fi
    say "Python: $("$PYTHON" -V 2>&1) ($(command -v "$PYTHON")), machine $(uname -m)"
}

create_user() {
    if [ "$STAGING" = 1 ]; then
        say "staging: skipped creating system user $SERVICE_USER (group $SERIAL_GROUP)"
        return
    fi
    getent group "$SERIAL_GROUP" >/dev/null || run groupadd --system "$SERIAL_GROUP"
    if getent passwd "$SERVICE_USER" >/dev/null; then
        if ! id -nG "$SERVICE_USER" | tr ' ' '\n' | grep -qx "$SERIAL_GROUP"; then
            run usermod -a -G "$SERIAL_GROUP" "$SERVICE_USER"
            did "added user $SERVICE_USER to group $SERIAL_GROUP"
        fi
        return
    fi
    getent group "$SERVICE_USER" >/dev/null || run groupadd --system "$SERVICE_USER"
    run useradd --system --gid "$SERVICE_USER" --groups "$SERIAL_GROUP" --home-dir "$STATE_DIR" \
        --no-create-home --shell /usr/sbin/nologin --comment "FieldLink gateway agent" "$SERVICE_USER"
    did "created system user $SERVICE_USER (groups $SERVICE_USER, $SERIAL_GROUP)"
}

# make_dir MODE OWNER GROUP PATH
make_dir() {
    local path
    path=$(at "$4")
    if [ "$STAGING" = 1 ]; then
        run install -d -m "$1" "$path"
    else
        run install -d -m "$1" -o "$2" -g "$3" "$path"
    fi
}

install_venv() {
    local venv src
    venv=$(at "$PREFIX")
    if [ "$NO_VENV" = 1 ]; then
        say "--no-venv: left the venv $PREFIX as it is"
        return
    fi
    if ! { [ -x "$venv/bin/python" ] && "$venv/bin/python" -c '' 2>/dev/null; }; then
        if [ -e "$venv/pyvenv.cfg" ]; then
            # A venv whose Python is gone (an OS upgrade replaced it): start it afresh.
            run "$PYTHON" -m venv --clear "$venv"
            did "recreated the broken venv $PREFIX"
        elif [ -d "$venv" ] && [ -n "$(ls -A "$venv")" ]; then
            die "$PREFIX exists and is not a venv: move it away or choose another --prefix"
        else
            run "$PYTHON" -m venv "$venv"
            did "created the venv $PREFIX"
        fi
    fi
    src=$SOURCE
    if [ -d "$SOURCE" ]; then
        [ -f "$SOURCE/pyproject.toml" ] || die "$SOURCE is not a FieldLink checkout (no pyproject.toml)"
        # Build from a clean copy: pip builds in the source tree, which would leave root-owned build/
        # and *.egg-info folders in the checkout.
        if [ "$DRY_RUN" = 0 ]; then
            BUILD_DIR=$(mktemp -d)
            trap 'rm -rf "$BUILD_DIR"' EXIT
            tar -C "$SOURCE" --exclude=./.git --exclude=./.venv --exclude=./build --exclude=node_modules \
                --exclude='*.egg-info' --exclude=__pycache__ --exclude=.pytest_cache --exclude=.mypy_cache \
                --exclude=.ruff_cache --exclude=.hypothesis -cf - . | tar -C "$BUILD_DIR" -xf -
            src=$BUILD_DIR
        fi
    elif [ ! -f "$SOURCE" ]; then
        die "--source $SOURCE: no such checkout or wheel"
    fi
    # --only-binary=:all: applies to the dependencies (FieldLink itself is pure Python and built here
    # when SOURCE is a checkout): no dependency may be compiled on the Pi.
    if ! run "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --upgrade \
        --only-binary=:all: "$src"; then
        die "pip could not install FieldLink from wheels only (above: which package, which version).
A dependency without a pure-Python wheel for $(uname -m) would need a compiler: see docs/install-pi.md.
No network? See \"Installing without network\" there."
    fi
    if [ -f "$src" ]; then
        # pip keeps an installed FieldLink of the same version as a wheel: replace it (a rebuilt wheel).
        run "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --no-deps \
            --force-reinstall "$src"
    fi
    did "installed FieldLink and its runtime dependencies (wheels only) into $PREFIX"
    if [ -d "$CHECKOUT/docs" ]; then
        run install -d -m 0755 "$venv/share/doc/fieldlink"
        for doc in install-pi.md config.md store-and-forward.md; do
            if [ -f "$CHECKOUT/docs/$doc" ]; then
                run install -m 0644 "$CHECKOUT/docs/$doc" "$venv/share/doc/fieldlink/"
            fi
        done
    fi
    local link
    link=$(at "$LINK")
    if [ -L "$link" ] || [ ! -e "$link" ]; then
        if [ "$(readlink "$link" 2>/dev/null)" != "$PREFIX/bin/fieldlink" ]; then
            run install -d -m 0755 "$(dirname "$link")"
            run ln -sfn "$PREFIX/bin/fieldlink" "$link"
            did "linked $LINK -> $PREFIX/bin/fieldlink"
        fi
    else
        say "left $LINK alone: it is not a link (run $PREFIX/bin/fieldlink)"
    fi
}

# Copy the config, with [outbox] path set to $OUTBOX (every other line as it is).
write_config() {
    awk -v outbox="$OUTBOX" '
        function put_path() { printf "path = \"%s\"\n", outbox; done = 1 }
        /^[ \t]*\[/ { in_outbox = ($0 ~ /^[ \t]*\[[ \t]*outbox[ \t]*\][ \t]*(#.*)?$/) }
        in_outbox && /^[ \t]*path[ \t]*=/ { next }
        { print }
        in_outbox && /^[ \t]*\[/ { put_path() }
        END { if (!done) { printf "\n[outbox]\n"; put_path() } }
    ' "$1" > "$2"
}

FRESH_CONFIG=0
install_config() {
    local target
    target=$(at "$CONFIG")
    if [ -e "$target" ]; then
        say "kept the existing $CONFIG (never overwritten)"
        return
    fi
    [ -f "$CONFIG_SOURCE" ] || die "no config to install: $CONFIG_SOURCE not found (pass --config FILE)"
    if [ "$DRY_RUN" = 1 ]; then
        printf '  would write: %s from %s with [outbox] path = "%s"\n' "$target" "$CONFIG_SOURCE" "$OUTBOX"
    else
        printf '  + write %s from %s with [outbox] path = "%s"\n' "$target" "$CONFIG_SOURCE" "$OUTBOX"
        write_config "$CONFIG_SOURCE" "$target.new"
        chmod 0640 "$target.new"
        [ "$STAGING" = 1 ] || chown "root:$SERVICE_USER" "$target.new"
        mv "$target.new" "$target"
    fi
    FRESH_CONFIG=1
    did "installed $CONFIG from $(basename "$CONFIG_SOURCE") (outbox $OUTBOX)"
}

install_unit() {
    local target
    target=$(at "$UNIT_DIR/$SERVICE.service")
    [ -f "$UNIT_TEMPLATE" ] || die "$UNIT_TEMPLATE not found"
    if [ "$DRY_RUN" = 1 ]; then
        printf '  would write: %s (ExecStart=%s/bin/fieldlink run %s)\n' "$target" "$PREFIX" "$CONFIG"
        did "installed the unit $UNIT_DIR/$SERVICE.service"
        [ "$STAGING" = 1 ] || run systemctl daemon-reload
        return
    fi
    run install -d -m 0755 "$(dirname "$target")"
    sed "s#$DEFAULT_PREFIX#$PREFIX#g" "$UNIT_TEMPLATE" > "$target.new"
    chmod 0644 "$target.new"
    if [ -f "$target" ] && cmp -s "$target.new" "$target"; then
        rm -f "$target.new"
        say "unit $UNIT_DIR/$SERVICE.service unchanged"
    else
        printf '  + write %s\n' "$target"
        mv "$target.new" "$target"
        did "installed the unit $UNIT_DIR/$SERVICE.service"
    fi
    [ "$STAGING" = 1 ] || run systemctl daemon-reload
}

CONFIG_OK=0
check_config() {
    local fl
    fl=${FIELDLINK:-$(at "$PREFIX")/bin/fieldlink}
    if [ "$DRY_RUN" = 1 ]; then
        printf '  would run: %s check-config %s\n' "$fl" "$(at "$CONFIG")"
        CONFIG_OK=1
        return
    fi
    [ -x "$fl" ] || die "$fl not found: cannot check the config (install the venv, or pass --fieldlink)"
    local cmd=("$fl" check-config "$(at "$CONFIG")")
    # As the service user when it exists, so an unreadable TLS key or profile folder shows up now.
    if [ "$STAGING" = 0 ] && command -v runuser >/dev/null && getent passwd "$SERVICE_USER" >/dev/null; then
        cmd=(runuser -u "$SERVICE_USER" -- "${cmd[@]}")
    fi
    # From /: the service user may not be allowed into the folder this script was started from.
    if (cd / && run "${cmd[@]}"); then
        CONFIG_OK=1
        did "checked $CONFIG: valid"
    else
        did "checked $CONFIG: INVALID, the service was not enabled"
    fi
}

enable_service() {
    if [ "$CONFIG_OK" = 0 ]; then
        return
    fi
    if [ "$STAGING" = 1 ]; then
        say "staging: skipped systemctl enable $SERVICE.service"
        return
    fi
    run systemctl enable "$SERVICE.service"
    did "enabled $SERVICE.service (starts at boot)"
    if [ "$FRESH_CONFIG" = 0 ]; then
        # An update: restart on the new program (SIGTERM flushes the open pack first).
        run systemctl restart "$SERVICE.service"
        did "restarted $SERVICE.service"
    fi
}

next_steps() {
    if [ "$CONFIG_OK" = 0 ]; then
        cat <<EOF

The config is invalid (every problem is listed above). Fix it, then run this installer again:
  sudo nano $CONFIG
  sudo fieldlink check-config $CONFIG
EOF
        return 1
    fi
    if [ "$FRESH_CONFIG" = 1 ]; then
        cat <<EOF

Next steps:
  1. Edit the config for this site (broker, gateway id, buses, devices):  sudo nano $CONFIG
  2. Check it:        sudo fieldlink check-config $CONFIG
  3. Start it:        sudo systemctl start $SERVICE
  4. Watch it:        systemctl status $SERVICE;  journalctl -u $SERVICE -f
EOF
    else
        cat <<EOF

Next steps:
  systemctl status $SERVICE          # should say active (running)
  journalctl -u $SERVICE -f          # live logs
EOF
    fi
}

# ---------------------------------------------------------------------------------------------------------
if [ "$UNINSTALL" = 1 ]; then
    uninstall
    exit 0
fi

check_python
create_user
make_dir 0750 root "$SERVICE_USER" "$ETC_DIR"
make_dir 0700 "$SERVICE_USER" "$SERVICE_USER" "$STATE_DIR"  # the outbox: the agent's alone (docs/store-and-forward.md)
install_venv
install_config
install_unit
check_config
enable_service
summary
next_steps
