#!/bin/sh
# /init of kiln's lab test OS. It stands in for the OS image a workflow
# streams to disk: on every boot it brings up the network, reads its
# hostname from kiln's EC2-style metadata service and phones home to kiln.
#
# Settings, later ones winning:
#   1. /etc/kiln/kiln.env on the root file system (LABEL=kilnroot), written
#      by the workflow's writefile action;
#   2. kernel arguments kiln_url=, kiln_ip=, kiln_gateway=, kiln_dns=.
# KILN_URL       base URL of kiln's HTTP server (metadata under
#                /2009-04-04/meta-data/, phone-home at /phone-home)
# KILN_IP        static address with prefix (10.0.0.5/24); DHCP when empty
# KILN_GATEWAY   default gateway for a static address
# KILN_DNS       name server for a static address
# KILN_PHONE_HOME_URL  where to POST the report; default $KILN_URL/phone-home
export PATH=/bin
log() { echo "kiln-lab: $*"; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
log "booting kernel $(uname -r)"

kver=$(uname -r)
while read -r m; do
	case "$m" in ''|'#'*) continue ;; esac
	insmod "/lib/modules/$kver/$m" 2>/dev/null
done </etc/kiln/modules

# The root file system carries the settings the workflow wrote.
root=""
for i in 1 2 3 4 5 6 7 8 9 10; do
	root=$(findfs LABEL=kilnroot 2>/dev/null) && break
	sleep 0.5
done
if [ -n "$root" ] && mount -t ext4 "$root" /mnt/root; then
	log "root file system $root mounted"
	[ -f /mnt/root/etc/kiln/kiln.env ] && . /mnt/root/etc/kiln/kiln.env
else
	log "no root file system labelled kilnroot; using kernel arguments only"
fi
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	kiln_url=*) KILN_URL=${arg#kiln_url=} ;;
	kiln_ip=*) KILN_IP=${arg#kiln_ip=} ;;
	kiln_gateway=*) KILN_GATEWAY=${arg#kiln_gateway=} ;;
	kiln_dns=*) KILN_DNS=${arg#kiln_dns=} ;;
	kiln_phone_home_url=*) KILN_PHONE_HOME_URL=${arg#kiln_phone_home_url=} ;;
	esac
done

ip link set lo up
iface=""
for i in 1 2 3 4 5 6 7 8 9 10; do
	for d in /sys/class/net/*; do
		n=${d##*/}
		[ "$n" = lo ] && continue
		iface=$n
		break
	done
	[ -n "$iface" ] && break
	sleep 0.5
done
if [ -z "$iface" ]; then
	log "FAILED: no network interface (missing driver?)"
	exec sh
fi
mac=$(cat "/sys/class/net/$iface/address")
ip link set "$iface" up
if [ -n "$KILN_IP" ]; then
	ip addr add "$KILN_IP" dev "$iface"
	[ -n "$KILN_GATEWAY" ] && ip route add default via "$KILN_GATEWAY"
	[ -n "$KILN_DNS" ] && echo "nameserver $KILN_DNS" >/etc/resolv.conf
	log "static address $KILN_IP on $iface ($mac)"
else
	udhcpc -i "$iface" -n -q -t 20 -T 2 -s /etc/udhcpc.script >/dev/null 2>&1 || log "DHCP on $iface failed"
fi
addr=$(ip -4 -o addr show dev "$iface" | awk '{print $4}' | cut -d/ -f1 | head -n1)
log "network $iface $mac $addr"

if [ -z "$KILN_URL" ]; then
	log "FAILED: no kiln URL (set KILN_URL in /etc/kiln/kiln.env or kiln_url= on the kernel command line)"
	exec sh
fi
name=""
for i in 1 2 3 4 5 6 7 8 9 10; do
	name=$(timeout 10 wget -q -O - "$KILN_URL/2009-04-04/meta-data/hostname" 2>/dev/null) && [ -n "$name" ] && break
	sleep 1
done
if [ -n "$name" ]; then
	hostname "$name"
	log "hostname $name (from $KILN_URL)"
else
	log "metadata service at $KILN_URL did not answer; keeping hostname $(hostname)"
	name=$(hostname)
fi

boots=1
if grep -q ' /mnt/root ' /proc/mounts; then
	mkdir -p /mnt/root/var/lib/kiln
	[ -f /mnt/root/var/lib/kiln/boots ] && boots=$(( $(cat /mnt/root/var/lib/kiln/boots) + 1 ))
	echo "$boots" >/mnt/root/var/lib/kiln/boots
	sync
fi
up=$(cut -d' ' -f1 /proc/uptime)
body="{\"hostname\":\"$name\",\"ip\":\"$addr\",\"mac\":\"$mac\",\"boot\":$boots,\"uptimeSeconds\":$up,\"kernel\":\"$kver\"}"
for i in 1 2 3 4 5 6 7 8 9 10; do
	if timeout 10 wget -q -O /dev/null --header "Content-Type: application/json" --post-data "$body" "${KILN_PHONE_HOME_URL:-$KILN_URL/phone-home}"; then
		log "phoned home as $name ($addr) boot $boots"
		break
	fi
	log "phone-home to ${KILN_PHONE_HOME_URL:-$KILN_URL/phone-home} failed; retrying"
	sleep 2
done

# Stay up like a server until kiln powers the VM off.
while :; do sleep 3600; done
