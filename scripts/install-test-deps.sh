#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, only when some are missing.
# Idempotent: on a prepared machine it runs `dpkg -s` and nothing else.
#
#   scripts/install-test-deps.sh            # test peers (+ nodejs/npm when npm is absent)
#   TEST_APT_PACKAGES="..." scripts/...      # override the package list
#
# Peers used by the tests (see shared/DESIGN.md "Testing with real peers"):
#   sip-tester   SIPp, the SIP load/conformance tool  (test/interop/sipp-*.test.ts)
#   baresip-core a real SIP softphone                 (test/interop/baresip-*.test.ts)
#   sox          WAV tones for the audio checks
#   linphone-cli linphonec, a SHA-256 digest capable softphone (test/interop/digest-order.test.ts)
#   iproute2, util-linux  `ip` and `unshare`: the torture corpus runs in a private network namespace
#   openssl      a throw-away certificate for the SIP-over-TLS tests
#   chromium     the web phone in a real browser, driven by playwright-core (test/interop/webphone*.test.ts)
#   coturn       TURN server with REST-API credentials (test/interop/coturn*.test.ts)
#   rtpengine-daemon  the RTPEngine media relay/bridge, driven over the ng protocol (test/interop/rtpengine*.test.ts)
#   kamailio     syntax check of the scale-out edge config (test/unit/deploy-compose.test.ts)
#   pebble       Let's Encrypt's ACME test server (+ pebble-challtestsrv as its DNS) (test/interop/acme.test.ts)
#   fonts-dejavu-core  a font for Chromium's screenshots of the web phone
#   nftables, ufw      `careflow firewall --apply` for real, inside private network namespaces
#                      (test/interop/firewall.test.ts); ufw stays inactive on the host
#   debootstrap, zstd  a clean Debian 12 root file system for the installer (scripts/install.sh),
#                      cached as /var/cache/careflow-test/bookworm-rootfs.tar.zst (test/interop/install.test.ts)
#   systemd-container  systemd-nspawn boots that root under its own systemd, so the installed unit
#                      runs under a real init (test/interop/install-systemd.test.ts)
#   qemu-user-static, binfmt-support  arm64 programs on x86_64: the installer in a Debian 12
#                      arm64 root file system (test/interop/install-arm64.test.ts)
#   buildah, podman    deploy/Dockerfile built and run without a Docker engine, for amd64 and
#                      arm64 (test/interop/container-image.test.ts)
set -euo pipefail

packages=(${TEST_APT_PACKAGES:-sip-tester baresip-core sox linphone-cli iproute2 util-linux openssl chromium coturn rtpengine-daemon pebble kamailio fonts-dejavu-core nftables ufw debootstrap zstd systemd-container qemu-user-static binfmt-support buildah podman})
# Node: the project pins Node 24 through the npm package `node@24` (node_modules/.bin/node);
# Debian's nodejs/npm are only the bootstrap that runs `npm ci`, so they are installed
# only when there is no npm at all.
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  # `dpkg -s` prints "Status: install ok installed" for an installed package
  if ! dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "test deps: all present (${packages[*]})"
  exit 0
fi

echo "test deps: installing ${missing[*]}"
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 || {
    echo "ERROR: missing Debian packages: ${missing[*]}; run as root: apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
apt_opts=(-o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
"${sudo[@]}" apt-get "${apt_opts[@]}" update -q
"${sudo[@]}" apt-get "${apt_opts[@]}" install -y -q --no-install-recommends "${missing[@]}"
echo "test deps: installed ${missing[*]}"
