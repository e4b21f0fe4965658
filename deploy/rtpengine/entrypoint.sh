#!/bin/sh
# Starts rtpengine for CareFlow from the same settings as the server (deploy/careflow.env):
#   CAREFLOW_RTPENGINE   ng control address, the first of the list (default 127.0.0.1:2223)
#   CAREFLOW_RTP_PORTS   media port range LOW-HIGH (default 10000-20000): the range
#                        `careflow firewall` opens
#   PUBLIC_IP            the public address, when this host sits behind 1:1 NAT (Oracle
#                        Cloud): SDP then advertises it (--interface=LOCAL!PUBLIC)
#   RTPENGINE_LOCAL_IP   this host's own address, when the one of the default route is wrong
# Extra arguments (compose `command:`) are passed on to rtpengine.
set -eu

ng=${CAREFLOW_RTPENGINE:-127.0.0.1:2223}
ng=${ng%%,*}
ports=${CAREFLOW_RTP_PORTS:-10000-20000}
port_min=${ports%-*}
port_max=${ports#*-}

local_ip=${RTPENGINE_LOCAL_IP:-}
if [ -z "$local_ip" ]; then
  # The source address of the default route (192.0.2.1 is a documentation address: nothing is sent).
  local_ip=$(ip -4 route get 192.0.2.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
fi
if [ -z "$local_ip" ]; then
  echo "careflow-rtpengine: cannot tell this host's IPv4 address; set RTPENGINE_LOCAL_IP in careflow.env" >&2
  exit 1
fi
interface=$local_ip
if [ -n "${PUBLIC_IP:-}" ]; then interface="$local_ip!$PUBLIC_IP"; fi

echo "careflow-rtpengine: interface $interface, ng $ng, RTP ports $port_min-$port_max"
exec rtpengine --foreground --log-stderr --table=-1 \
  --interface="$interface" --listen-ng="$ng" \
  --port-min="$port_min" --port-max="$port_max" "$@"
