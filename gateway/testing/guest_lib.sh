# Shell library of the system-test guest (POSIX sh: /bin/sh is dash in the guest).
#
# gateway.testing.guest puts this file at /vmtest/lib.sh; the generated /init sources it,
# runs vm_boot and the test script in a subshell with `set -e` and ends with vm_finish.
#
# Channels (file descriptors opened by vm_boot, inherited by everything):
#   fd 3  events (second serial port, ttyS1 -> events.log on the host): the lines the host
#         parses: "VMTEST[uptime] text", "VMDATA key=value", "VMBLOCK name BEGIN|END",
#         "VMBLOCK name | line", "VMWAIT name", "RESULT: PASS|FAIL: reason".
#   fd 4  the console (ttyS0 -> serial.log): command output and a copy of every event.
#   stdout is left free for "return values" ($(vm_wait_multipath 2) prints the map name).
# A host signal is a file /host/signals/NAME on the 9p share (Guest.signal(name, value)).
#
# Every wait has a timeout and fails the test with a message saying what was awaited.
# Secrets (VM_CHAP_PASSWORD) are never echoed.

VM_FAILED_FILE=/run/vmtest.failed     # the first failure's message
VM_WRITTEN=/run/vmtest.written        # writes acknowledged so far (vm_write)
VM_SIGNALS=/host/signals              # host signals (files on the 9p share)

vm_uptime() { cut -d' ' -f1 /proc/uptime; }

_vm_event() {   # one line to the host and to the console
    printf '%s\n' "$*" >&3
    printf '%s\n' "$*" >&4
}

vm_log() { _vm_event "VMTEST[$(vm_uptime)] $*"; }

vm_fail() {
    _vm_event "VMTEST[$(vm_uptime)] FAIL: $*"
    [ -e "$VM_FAILED_FILE" ] || printf '%s\n' "$*" > "$VM_FAILED_FILE"
    exit 1
}

vm_data() {     # vm_data KEY VALUE...: a value for the host (GuestResult.data[KEY])
    _k=$1; shift
    _vm_event "VMDATA $_k=$*"
}

vm_block() {    # vm_block NAME CMD...: run CMD, send its output as block NAME; keeps CMD's status
    _name=$1; shift
    _out=$("$@" 2>&1) && _rc=0 || _rc=$?
    printf '%s\n' "$_out" >&4
    printf 'VMBLOCK %s BEGIN\n' "$_name" >&3
    printf '%s\n' "$_out" | sed "s/^/VMBLOCK $_name | /" >&3
    printf 'VMBLOCK %s END rc=%s\n' "$_name" "$_rc" >&3
    return $_rc
}

vm_run() {      # vm_run CMD...: run, show output on the console, fail the test on error
    printf '$ %s\n' "$*" >&4
    "$@" >&4 2>&4 || vm_fail "command failed ($?): $*"
}

vm_wait_host() {   # vm_wait_host NAME [TIMEOUT]: wait for Guest.signal(NAME); prints its value
    _t=${2:-120}
    _vm_event "VMWAIT $1"
    _end=$(( $(date +%s) + _t ))
    while [ ! -e "$VM_SIGNALS/$1" ]; do
        [ "$(date +%s)" -lt "$_end" ] || vm_fail "no host signal '$1' within ${_t}s"
        sleep 0.2
    done
    cat "$VM_SIGNALS/$1"
}

# ---- boot --------------------------------------------------------------------------------
vm_channels() {   # open fd 3 (events, ttyS1) and fd 4 (console)
    exec 4>/dev/console
    if [ -e /dev/ttyS1 ] && exec 3>/dev/ttyS1; then
        stty -F /dev/ttyS1 raw -echo 2>/dev/null || true
    else
        exec 3>/dev/null
    fi
}

vm_boot() {
    mount -t proc proc /proc
    mount -t sysfs sys /sys
    mount -t devtmpfs dev /dev 2>/dev/null || true
    mkdir -p /dev/pts /dev/shm /run /tmp /host
    mount -t devpts devpts /dev/pts
    mount -t tmpfs -o mode=0755 run /run
    mount -t tmpfs -o mode=1777 tmp /tmp
    mkdir -p /run/lock /run/lock/iscsi /run/udev
    vm_channels
    vm_log "init (kernel $(uname -r))"
    hostname vmtest
    for _m in virtio_pci virtio_net 9pnet_virtio 9p; do modprobe -q "$_m" || true; done
    if mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 host /host 2>/dev/null; then :; else
        vm_log "no host share (9p) mounted"
    fi
    vm_net_up
    # quiet boot (serial output is slow under TCG), but show the test's kernel messages
    # (iSCSI connection errors, multipath path changes) in serial.log
    dmesg -n 7 2>/dev/null || true
    vm_log "boot done"
}

vm_net_up() {   # slirp: guest 10.0.2.15/24, the host is 10.0.2.2; forwards are 10.0.2.1xx
    # Large receive buffers: with the default ones a slow (TCG) guest advertises a zero
    # window, slirp's segments get dropped and each drop stalls I/O for ~5 s.
    sysctl -q -w net.core.rmem_max=8388608 net.core.rmem_default=4194304 \
        net.ipv4.tcp_rmem="4096 4194304 8388608" || vm_log "cannot enlarge TCP receive buffers"
    ip link set lo up
    ip link set eth0 up || vm_fail "no eth0"
    ip addr add 10.0.2.15/24 dev eth0
    ip route add default via 10.0.2.2
}

vm_start_udev() {
    /usr/lib/systemd/systemd-udevd --daemon --resolve-names=never 2>&4 || vm_fail "udevd did not start"
    udevadm trigger --action=add --type=all
    udevadm settle --timeout=60 || vm_log "udevadm settle timed out"
}

vm_start_iscsid() {
    [ -s /etc/iscsi/initiatorname.iscsi ] || vm_fail "no /etc/iscsi/initiatorname.iscsi"
    modprobe -q iscsi_tcp || vm_fail "modprobe iscsi_tcp"
    # in the foreground (backgrounded here) so that its log lands in serial.log, not syslog
    iscsid -f >&4 2>&4 &
    _i=0
    until iscsiadm -m session >/dev/null 2>&1 || [ $? -eq 21 ]; do   # 21: no sessions, iscsid up
        _i=$((_i + 1)); [ $_i -lt 100 ] || vm_fail "iscsid not answering"
        sleep 0.1
    done
    vm_log "iscsid up ($(cat /etc/iscsi/initiatorname.iscsi | sed -n 's/^InitiatorName=//p'))"
}

vm_start_multipathd() {
    for _m in dm_multipath dm_round_robin dm_service_time dm_queue_length scsi_dh_alua; do
        modprobe -q "$_m" || vm_fail "modprobe $_m"
    done
    multipathd 2>&4 || vm_fail "multipathd did not start"
    _i=0
    until multipathd show daemon >/dev/null 2>&1; do
        _i=$((_i + 1)); [ $_i -lt 200 ] || vm_fail "multipathd not answering"
        sleep 0.1
    done
    vm_log "multipathd up"
}

vm_start_initiator() {  # udev + iscsid + multipathd: what a multipath test needs
    vm_start_udev
    vm_start_iscsid
    vm_start_multipathd
}

# ---- iSCSI ------------------------------------------------------------------------------
vm_iscsi_discover() {   # vm_iscsi_discover PORTAL: SendTargets; prints "portal,tpgt iqn" lines
    _out=$(iscsiadm -m discovery -t sendtargets -p "$1" 2>&1) || vm_fail "discovery at $1: $_out"
    printf '%s\n' "$_out" | sed 's/^/VMDISCOVERY /' >&3
    printf '%s\n' "$_out" >&4
    printf '%s\n' "$_out"
}

# vm_iscsi_login IQN PORTAL...: log in to IQN through each PORTAL (guest-side ip:port).
# Node records are created for exactly these portals: SendTargets answers with the
# target's own (host) addresses, which the guest cannot reach.  Env: VM_CHAP_USER and
# VM_CHAP_PASSWORD (CHAP), VM_REPLACEMENT_TIMEOUT (s, default 5), VM_NOOP_INTERVAL and
# VM_NOOP_TIMEOUT (s, default 5).
vm_iscsi_login() {
    _iqn=$1; shift
    [ $# -gt 0 ] || vm_fail "vm_iscsi_login: no portal"
    iscsiadm -m node -T "$_iqn" -o delete >/dev/null 2>&1 || true
    for _p in "$@"; do
        vm_run iscsiadm -m node -T "$_iqn" -p "$_p" -o new
        _vm_node_set "$_iqn" "$_p" node.session.timeo.replacement_timeout "${VM_REPLACEMENT_TIMEOUT:-5}"
        _vm_node_set "$_iqn" "$_p" node.conn[0].timeo.noop_out_interval "${VM_NOOP_INTERVAL:-5}"
        _vm_node_set "$_iqn" "$_p" node.conn[0].timeo.noop_out_timeout "${VM_NOOP_TIMEOUT:-5}"
        if [ -n "${VM_CHAP_USER:-}" ]; then
            _vm_node_set "$_iqn" "$_p" node.session.auth.authmethod CHAP
            _vm_node_set "$_iqn" "$_p" node.session.auth.username "$VM_CHAP_USER"
            _vm_node_set "$_iqn" "$_p" node.session.auth.password "${VM_CHAP_PASSWORD:-}"
        fi
        _out=$(iscsiadm -m node -T "$_iqn" -p "$_p" --login 2>&1) || vm_fail "login to $_iqn at $_p: $_out"
        vm_log "logged in to $_iqn at $_p"
    done
}

_vm_node_set() {  # quiet: values may be secrets
    iscsiadm -m node -T "$1" -p "$2" -o update -n "$3" -v "$4" >/dev/null 2>&1 \
        || vm_fail "cannot set $3 on node $1 $2"
}

vm_iscsi_logout() {  # flush unused multipath maps, then log out of every session
    multipath -F >/dev/null 2>&1 || true
    vm_run iscsiadm -m node --logoutall=all
    vm_log "logged out"
}

vm_disk_portal() {   # vm_disk_portal sdX: the ip:port of the iSCSI connection behind sdX
    _dev=$(readlink -f "/sys/block/$1/device") || vm_fail "no /sys/block/$1"
    _sess=$(printf '%s\n' "$_dev" | sed -n 's|.*/\(session[0-9]*\)/.*|\1|p')
    [ -n "$_sess" ] || vm_fail "$1 is not an iSCSI disk"
    _conn=$(ls -d /sys/class/iscsi_connection/connection"${_sess#session}":* | head -n1)
    echo "$(cat "$_conn/persistent_address"):$(cat "$_conn/persistent_port")"
}

# ---- disks and multipath ----------------------------------------------------------------
vm_disks() { for _d in /sys/block/sd*; do [ -e "$_d" ] && basename "$_d"; done; return 0; }

vm_wait_disks() {   # vm_wait_disks N [TIMEOUT]: wait for N SCSI disks; prints their names
    _t=${2:-60}; _end=$(( $(date +%s) + _t ))
    while [ "$(vm_disks | wc -l)" -lt "$1" ]; do
        [ "$(date +%s)" -lt "$_end" ] || vm_fail "only $(vm_disks | wc -l) of $1 disks after ${_t}s"
        sleep 0.2
    done
    udevadm settle --timeout=30 >/dev/null 2>&1 || true
    vm_disks
}

vm_map_paths() {  # vm_map_paths MAP: "disk dm_state checker_state prio" per path
    multipathd show paths raw format "%m %d %t %T %p" 2>/dev/null | awk -v m="$1" '$1 == m {print $2, $3, $4, $5}'
}

# vm_wait_multipath NPATHS [TIMEOUT]: wait for exactly one map with NPATHS paths, all
# "active ready"; prints the map name.
vm_wait_multipath() {
    _t=${2:-60}; _end=$(( $(date +%s) + _t ))
    while :; do
        _maps=$(multipathd show maps raw format "%n" 2>/dev/null | grep -v '^name$' || true)
        if [ "$(printf '%s\n' "$_maps" | grep -c .)" -eq 1 ]; then
            _ok=$(vm_map_paths "$_maps" | awk '$2 == "active" && $3 == "ready"' | wc -l)
            _all=$(vm_map_paths "$_maps" | wc -l)
            if [ "$_all" -eq "$1" ] && [ "$_ok" -eq "$1" ]; then
                vm_log "multipath map $_maps has $1 active paths"
                echo "$_maps"
                return 0
            fi
        fi
        if [ "$(date +%s)" -ge "$_end" ]; then
            multipath -ll >&4 2>&4
            vm_fail "no single multipath map with $1 active paths after ${_t}s (maps: $_maps)"
        fi
        sleep 0.5
    done
}

# vm_wait_path MAP DISK STATE [TIMEOUT]: wait until DISK's dm state in MAP is STATE
# (active|failed).
vm_wait_path() {
    _t=${4:-60}; _end=$(( $(date +%s) + _t ))
    until vm_map_paths "$1" | awk -v d="$2" -v s="$3" '$1 == d && $2 == s {f=1} END {exit !f}'; do
        [ "$(date +%s)" -lt "$_end" ] || vm_fail "path $2 of $1 not $3 after ${_t}s"
        sleep 0.5
    done
    vm_log "path $2 of $1 is $3"
}

vm_failed_paths() {  # vm_failed_paths MAP: the disks multipath has failed in MAP
    vm_map_paths "$1" | awk '$2 == "failed" {print $1}'
}

vm_best_path() {   # vm_best_path MAP: the disk with the highest priority (the ALUA owner's)
    vm_map_paths "$1" | sort -k4,4nr | head -n1 | cut -d' ' -f1
}

vm_active_path() {  # vm_active_path MAP: the first path of MAP's active path group
    local p
    p=$(multipath -ll "$1" 2>/dev/null | awk '
        /policy=/ { act = ($0 ~ /status=active/) }
        act { for (i = 1; i < NF; i++) if ($i ~ /^[0-9]+:[0-9]+:[0-9]+:[0-9]+$/) { print $(i + 1); exit } }')
    [ -n "$p" ] || vm_fail "map $1 has no active path group"
    echo "$p"
}

vm_io_count() {   # vm_io_count sdX: reads + writes completed on a path so far
    awk '{ print $1 + $5 }' "/sys/block/$1/stat"
}

vm_multipath_ll() {  # vm_multipath_ll [BLOCK]: multipath -ll as block BLOCK (default "multipath")
    vm_block "${1:-multipath}" multipath -ll || vm_fail "multipath -ll failed"
}

vm_scsi_info() {   # vm_scsi_info sdX [TAG]: INQUIRY, VPD 0x83 and RTPG of a path as blocks
    _tag=${2:-$1}
    vm_block "sg_inq-$_tag" sg_inq "/dev/$1" || vm_fail "sg_inq /dev/$1"
    vm_block "sg_vpd83-$_tag" sg_vpd -p 0x83 "/dev/$1" || vm_fail "sg_vpd -p 0x83 /dev/$1"
    vm_block "sg_rtpg-$_tag" sg_rtpg -d "/dev/$1" || vm_log "sg_rtpg on $1 failed (target without ALUA?)"
}

vm_path_offline() {  # vm_path_offline sdX: fail a path from the guest side
    echo offline > "/sys/block/$1/device/state" || vm_fail "cannot offline $1"
    vm_log "path $1 set offline"
}

vm_path_online() {
    echo running > "/sys/block/$1/device/state" || vm_fail "cannot set $1 running"
    vm_log "path $1 set running"
}

# ---- data -------------------------------------------------------------------------------
# vm_write DEV OFFSET_MIB SIZE_MIB TAG: write SIZE MiB of fresh random data (kept as TAG)
# at OFFSET with O_DIRECT and fdatasync.  Every acknowledged write is recorded, so that
# vm_verify_all can later prove that all of them still read back (after a failover).
# I/O goes in 256 KiB requests: with 1 MiB ones, about one run in four stalled 5 s on a
# TCP zero-window drop between slirp and the (slow, emulated) guest.

vm_write() {
    head -c "$(( $3 * 1048576 ))" /dev/urandom > "/tmp/pattern-$4" || vm_fail "no pattern $4"
    dd if="/tmp/pattern-$4" of="$1" bs=256K seek="$(( $2 * 4 ))" count="$(( $3 * 4 ))" oflag=direct \
        conv=fdatasync,notrunc status=none 2>&4 || vm_fail "write of $3 MiB at ${2} MiB to $1 ($4) failed"
    # forget older writes this one overwrote (fully or partly)
    touch "$VM_WRITTEN"
    awk -v d="$1" -v o="$2" -v n="$3" '!($1 == d && $2 < o + n && o < $2 + $3)' "$VM_WRITTEN" \
        > "$VM_WRITTEN.new" && mv "$VM_WRITTEN.new" "$VM_WRITTEN"
    echo "$1 $2 $3 $4" >> "$VM_WRITTEN"
    vm_log "wrote $3 MiB at ${2} MiB to $1 ($4)"
}

vm_verify() {   # vm_verify DEV OFFSET_MIB SIZE_MIB TAG: read back with O_DIRECT and compare
    dd if="$1" of=/tmp/readback bs=256K skip="$(( $2 * 4 ))" count="$(( $3 * 4 ))" iflag=direct status=none 2>&4 \
        || vm_fail "read of $3 MiB at ${2} MiB from $1 ($4) failed"
    cmp "/tmp/pattern-$4" /tmp/readback >&4 2>&4 || vm_fail "data read back from $1 differs ($4)"
    rm -f /tmp/readback
    vm_log "verified $3 MiB at ${2} MiB on $1 ($4)"
}

vm_write_verify() { vm_write "$@"; vm_verify "$@"; }

vm_verify_all() {  # vm_verify_all [DEV]: every write recorded so far (on DEV) reads back
    local d o n t
    [ -e "$VM_WRITTEN" ] || return 0
    while read -r d o n t; do
        [ -z "${1:-}" ] || [ "$d" = "$1" ] || continue
        vm_verify "$d" "$o" "$n" "$t"
    done < "$VM_WRITTEN"
}

# ---- failover scenarios -----------------------------------------------------------------
# Both fail the path of MAP's active group, then prove that a new write succeeds through
# another path and that every write acknowledged before still reads back (vm_verify_all).
# Their own write is 4 MiB at OFFSET_MIB (default 16 and 24).

_vm_other_io() {   # _vm_other_io MAP PATH: I/O count summed over MAP's other paths
    local d n=0
    for d in $(vm_map_paths "$1" | awk -v p="$2" '$1 != p {print $1}'); do
        n=$((n + $(vm_io_count "$d")))
    done
    echo "$n"
}

_vm_io_survives() {  # _vm_io_survives MAP PATH STEP OFFSET_MIB: write+verify with PATH gone
    local before after
    before=$(_vm_other_io "$1" "$2")
    vm_write_verify "/dev/mapper/$1" "$4" 4 "$3"
    vm_verify_all "/dev/mapper/$1"
    after=$(_vm_other_io "$1" "$2")
    [ "$after" -gt "$before" ] || vm_fail "I/O after failing $2 did not go through another path"
    vm_wait_path "$1" "$2" failed 60
}

# vm_failover_offline MAP [OFFSET_MIB]: set the active path offline from inside the guest, check I/O
# continues, then bring the path back and wait until multipathd reinstates it.
vm_failover_offline() {
    local p
    p=$(vm_active_path "$1")
    vm_path_offline "$p"
    _vm_io_survives "$1" "$p" offline "${2:-16}"
    vm_multipath_ll multipath-offline
    vm_path_online "$p"
    vm_wait_path "$1" "$p" active 60
}

# vm_failover_on_host MAP SIGNAL [TIMEOUT [OFFSET_MIB]]: report the active path's portal as
# VMDATA owner_portal (and its disk as owner_path), wait until the host has failed it
# (Guest.signal(SIGNAL)), then check I/O continues through another path.
vm_failover_on_host() {
    local p
    p=$(vm_active_path "$1")
    vm_data owner_path "$p"
    vm_data owner_portal "$(vm_disk_portal "$p")"
    vm_wait_host "$2" "${3:-120}" >/dev/null
    _vm_io_survives "$1" "$p" "after-$2" "${4:-24}"
    vm_multipath_ll multipath-after-"$2"
}

# ---- end --------------------------------------------------------------------------------
vm_finish() {   # vm_finish STATUS: print the verdict and power off
    vm_channels
    if [ "$1" -eq 0 ] && [ ! -e "$VM_FAILED_FILE" ]; then
        _vm_event "RESULT: PASS"
    else
        _why=$(cat "$VM_FAILED_FILE" 2>/dev/null || echo "test script exited with status $1")
        _vm_event "RESULT: FAIL: $_why"
    fi
    if [ $$ -eq 1 ]; then   # only as the guest's init: never power off a host by mistake
        echo o > /proc/sysrq-trigger
        sleep 30
    fi
}
