#!/bin/bash
# Runs inside the test VM (started by /sbin/ws-vm-init from the payload disk).
# Brings up a cgroup v2 only host with Debian's dockerd, runs the workspace image
# with real --privileged under --cgroupns=private and --cgroupns=host, and reports
# one line per assertion on the second serial port (/dev/ttyS1):
#   WSVM-RESULT name=NAME ok=0|1 value=TEXT
# plus WSVM-TIME lines (seconds since boot) and a final WSVM-DONE line.
# Not `set -e`: every assertion reports, a failure does not hide the others.
set -uo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
payload="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=/dev/null
source "$payload/config.sh" # IMAGE, IMAGE_ID, GUEST_TIMEOUT
results=/dev/ttyS1

uptime_s() { cut -d' ' -f1 /proc/uptime; }
say() { echo "[guest $(uptime_s)] $*" >/dev/console; }
result() { # NAME OK VALUE
    local line="WSVM-RESULT name=$1 ok=$2 value=${3//$'\n'/ | }"
    echo "$line" >"$results"
    echo "$line" >/dev/console
}
check_eq() { # NAME EXPECTED ACTUAL
    if [[ "$3" == "$2" ]]; then result "$1" 1 "$3"; else result "$1" 0 "expected '$2' got '$3'"; fi
}
mark() { echo "WSVM-TIME phase=$1 uptime=$(uptime_s)" | tee "$results" >/dev/console; }

# Hard stop: the VM powers off even if a step below hangs.
(
    sleep "$GUEST_TIMEOUT"
    echo "WSVM-RESULT name=guest_timeout ok=0 value=${GUEST_TIMEOUT}s" >"$results"
    echo 1 >/proc/sys/kernel/sysrq
    echo o >/proc/sysrq-trigger
) &

mark booted

# --- a cgroup v2 only host -------------------------------------------------
mountpoint -q /run || mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/lock /dev/pts /dev/shm
mountpoint -q /dev/pts || mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mountpoint -q /dev/shm || mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mountpoint -q /tmp || mount -t tmpfs -o mode=1777 tmpfs /tmp
mountpoint -q /sys/fs/cgroup || mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
check_eq vm_cgroup_fs cgroup2fs "$(stat -fc %T /sys/fs/cgroup)"
hostname wsvm
ip link set lo up
mkdir -p /var/lib/docker
mount -o noinit_itable /dev/vdb /var/lib/docker || result vm_docker_disk 0 "cannot mount /dev/vdb"
for m in overlay br_netfilter bridge veth nf_tables nft_chain_nat nf_nat xt_MASQUERADE \
    xt_addrtype xt_conntrack iptable_nat iptable_filter ip_tables; do
    modprobe -q "$m" || say "modprobe $m failed"
done

# --- outer dockerd (the "host" engine) -------------------------------------
dockerd >/var/log/dockerd.log 2>&1 &
ready=0
for _ in $(seq 1 180); do
    if docker version >/dev/null 2>&1; then ready=1; break; fi
    sleep 1
done
mark outer_dockerd_ready
if [[ $ready != 1 ]]; then
    result outer_dockerd 0 "not ready in 180 s: $(tail -n 5 /var/log/dockerd.log)"
    echo "WSVM-DONE" >"$results"
    exit 0
fi
result outer_dockerd 1 "$(docker info --format 'cgroup={{.CgroupVersion}} driver={{.CgroupDriver}} storage={{.Driver}}')"
check_eq outer_image_id "$IMAGE_ID" "$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>&1)"
driver="$(docker info --format '{{.CgroupDriver}}')"

container_cgroup() { # CID -> the container's cgroup directory as seen from the VM
    if [[ "$driver" == systemd ]]; then
        echo "/sys/fs/cgroup/system.slice/docker-$1.scope"
    else
        echo "/sys/fs/cgroup/docker/$1"
    fi
}

# --- inner Docker ready, as the workspace user -----------------------------
inner_ready() { # MODE START_SECONDS: wait up to 600 s (dockerd restarts included)
    local mode=$1 t0=$2
    while ((SECONDS - t0 < 600)); do
        if docker exec -u workspace "ws-$mode" docker version >/dev/null 2>&1; then
            result "$mode.inner_docker_ready" 1 "$((SECONDS - t0))s after docker run"
            return 0
        fi
        if [[ "$(docker inspect --format '{{.State.Running}}' "ws-$mode")" != true ]]; then
            break
        fi
        sleep 1
    done
    result "$mode.inner_docker_ready" 0 "not ready $((SECONDS - t0))s after docker run: $(docker logs --tail 15 "ws-$mode" 2>&1)"
    return 1
}

ws() { docker exec -u workspace "ws-$mode" "$@" 2>&1; }
wsroot() { docker exec "ws-$mode" "$@" 2>&1; }
vm_root_procs_before="$(sort /sys/fs/cgroup/cgroup.procs | xargs)"
dockerd_pid="$(pidof dockerd)"

# --- one workspace at a time (two inner dockerds at once under TCG make
# containerd miss dockerd's start timeout): real --privileged, both cgroupns modes.
modes=(private host)
for mode in "${modes[@]}"; do
    t0=$SECONDS
    if ! c="$(docker run -d --privileged -e WS_DOCKER_ENABLE_CLIENT=1 \
        --cgroupns="$mode" --name "ws-$mode" "$IMAGE" 2>&1)"; then
        result "$mode.run" 0 "$c"
        continue
    fi
    # docker execs racing with startup: issued at once, while ws-init may be
    # between moving processes out of the root cgroup and enabling controllers.
    race_pids=()
    for i in 1 2 3; do
        timeout 120 docker exec "ws-$mode" sh -c 'cat /proc/self/cgroup; sleep 1' \
            >"/tmp/race-$mode-$i.out" 2>&1 &
        race_pids+=("$!")
    done
    failed=0
    for pid in "${race_pids[@]}"; do wait "$pid" || failed=$((failed + 1)); done
    out="$(cat /tmp/race-"$mode"-*.out)"
    if [[ $failed == 0 ]]; then
        result "$mode.racing_exec" 1 "$out"
    else
        result "$mode.racing_exec" 0 "$failed of 3 failed: $out"
    fi
    if ! inner_ready "$mode" "$t0"; then
        docker rm -f "ws-$mode" >/dev/null 2>&1
        continue
    fi
    mark "$mode.inner_ready"
    check_eq "$mode.docker_info_cgroup_version" 2 "$(ws docker info --format '{{.CgroupVersion}}')"

    # Inner image: Debian's static busybox, imported inside the workspace.
    docker cp "$payload/busybox" "ws-$mode:/tmp/busybox" >/dev/null 2>&1
    imp="$(ws sh -c 'set -e; rm -rf /tmp/bbimg; mkdir -p /tmp/bbimg/bin
        cp /tmp/busybox /tmp/bbimg/bin/busybox; ln -s busybox /tmp/bbimg/bin/sh
        tar -C /tmp/bbimg -c . | docker import - wsvm/busybox:1')"
    check_eq "$mode.inner_image_import" 0 "$?"
    [[ "$imp" == sha256:* ]] || say "import output: $imp"
    check_eq "$mode.inner_run" hello "$(ws docker run --rm wsvm/busybox:1 /bin/busybox echo hello)"
    # apparmor=unconfined keeps the limit checks independent of inner_run above:
    # Docker 20.10 on an AppArmor kernel needs apparmor_parser for its default
    # profile (moby#44900, fixed in 23.0), which inner_run reports on its own.
    limits="$(ws docker run --rm --security-opt apparmor=unconfined \
        --memory 48m --cpus 0.5 wsvm/busybox:1 \
        /bin/busybox cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max)"
    check_eq "$mode.inner_memory_max" 50331648 "$(sed -n 1p <<<"$limits")"
    check_eq "$mode.inner_cpu_max" "50000 100000" "$(sed -n 2p <<<"$limits")"

    # The workspace's own cgroup (seen from the VM): no process left in it, and
    # every controller it has is enabled for its children.
    cg="$(container_cgroup "$c")"
    check_eq "$mode.root_cgroup_procs_empty" "" "$(cat "$cg/cgroup.procs" 2>&1)"
    have="$(tr ' ' '\n' <"$cg/cgroup.controllers" | sort | xargs)"
    enabled="$(tr ' ' '\n' <"$cg/cgroup.subtree_control" | sort | xargs)"
    if [[ -n "$have" && "$have" == "$enabled" ]]; then
        result "$mode.root_cgroup_subtree_control" 1 "$enabled"
    else
        result "$mode.root_cgroup_subtree_control" 0 "controllers '$have' enabled '$enabled'"
    fi
    # ws-init (PID 1) moved itself into a leaf BELOW the workspace's root cgroup
    # (leaving it would escape the limits the user gave the workspace).
    pid1_cg="$(wsroot cat /proc/1/cgroup)"
    root_rel="/${cg#/sys/fs/cgroup/}"
    [[ "$mode" == private ]] && root_rel=""
    if [[ "$pid1_cg" == "0::$root_rel/"?* ]]; then
        result "$mode.pid1_cgroup" 1 "$pid1_cg"
    else
        result "$mode.pid1_cgroup" 0 "expected below '0::$root_rel/', got '$pid1_cg'"
    fi
    # The VM's own processes (its dockerd) were not moved by the workspace.
    check_eq "$mode.vm_dockerd_cgroup_untouched" "0::/" "$(cat "/proc/$dockerd_pid/cgroup")"
    if [[ "$mode" == private ]]; then
        # The same root, as the workspace sees it through its cgroup namespace.
        check_eq "$mode.inside_root_cgroup_procs_empty" "" "$(wsroot cat /sys/fs/cgroup/cgroup.procs)"
        check_eq "$mode.inside_subtree_control" "$enabled" \
            "$(wsroot cat /sys/fs/cgroup/cgroup.subtree_control | tr ' ' '\n' | sort | xargs)"
    fi

    # ws-init doctor --json: loose parse (the schema is not fixed yet).
    doc="$(wsroot ws-init doctor --json)"
    compact="$(tr -d ' \n\t' <<<"$doc")"
    # cgroup v2: a unified layout or a cgroup version 2, however the schema spells it.
    if grep -Eiq '"layout":"unified"|cgroup[a-z_]*version"?:"?v?2[",}]' <<<"$compact"; then
        result "$mode.doctor_cgroup_v2" 1 "$(grep -Eio '"layout":"[a-z]*"|cgroup[a-z_]*version"?:"?v?2' <<<"$compact" | head -n 2 | tr '\n' ' ')"
    else
        result "$mode.doctor_cgroup_v2" 0 "$(head -c 600 <<<"$doc")"
    fi
    if grep -Eiq '"mode[a-z_]*":"[^"]*(inner|privileged)' <<<"$compact"; then
        result "$mode.doctor_mode_inner" 1 "$(grep -Eio '"mode[a-z_]*":"[^"]*"' <<<"$compact" | head -n 2 | tr '\n' ' ')"
    else
        result "$mode.doctor_mode_inner" 0 "$(head -c 600 <<<"$doc")"
    fi
    if grep -q '"ok":true' <<<"$compact"; then
        result "$mode.doctor_ok" 1 '"ok":true'
    else
        result "$mode.doctor_ok" 0 "$(head -c 600 <<<"$doc")"
    fi
    mark "$mode.checked"
    t1=$SECONDS
    docker stop -t 30 "ws-$mode" >/dev/null 2>&1
    say "ws-$mode stopped in $((SECONDS - t1))s, exit $(docker inspect --format '{{.State.ExitCode}}' "ws-$mode")"
    say "ws-$mode log (last lines):"
    docker logs --tail 40 "ws-$mode" 2>&1 | sed "s/^/[ws-$mode] /" >/dev/console
    docker rm -f "ws-$mode" >/dev/null 2>&1
done
# --- rootless inner Docker (WS_DOCKER_ROOTLESS=1): dockerd as the workspace user ---
mode=rootless
t0=$SECONDS
if c="$(docker run -d --privileged -e WS_DOCKER_ENABLE_CLIENT=1 -e WS_DOCKER_ROOTLESS=1 \
    -v wsvm-rootless:/var/lib/docker --name ws-rootless "$IMAGE" 2>&1)"; then
    if inner_ready rootless "$t0"; then
        mark rootless.inner_ready
        sec="$(ws docker info --format '{{.SecurityOptions}} driver={{.CgroupDriver}}')"
        if [[ "$sec" == *name=rootless* ]]; then
            result rootless.docker_info_rootless 1 "$sec"
        else
            result rootless.docker_info_rootless 0 "$sec"
        fi
        check_eq rootless.dockerd_user workspace "$(wsroot ps -o user= -C dockerd)"
        docker cp "$payload/busybox" "ws-rootless:/tmp/busybox" >/dev/null 2>&1
        ws sh -c 'set -e; rm -rf /tmp/bbimg; mkdir -p /tmp/bbimg/bin
            cp /tmp/busybox /tmp/bbimg/bin/busybox; ln -s busybox /tmp/bbimg/bin/sh
            tar -C /tmp/bbimg -c . | docker import - wsvm/busybox:1' >/dev/null
        check_eq rootless.inner_run hello "$(ws docker run --rm wsvm/busybox:1 /bin/busybox echo hello)"
        # Root in an inner container is the workspace user outside: /etc/shadow stays closed.
        before="$(wsroot md5sum /etc/shadow)"
        if out="$(ws docker run --rm -v /etc:/e wsvm/busybox:1 /bin/busybox sh -c 'echo x >>/e/shadow')"; then
            result rootless.shadow_refused 0 "the write worked: $out"
        else
            check_eq rootless.shadow_refused "$before" "$(wsroot md5sum /etc/shadow)"
        fi
    fi
    docker stop -t 30 ws-rootless >/dev/null 2>&1
    say "ws-rootless log (last lines):"
    docker logs --tail 40 ws-rootless 2>&1 | sed "s/^/[ws-rootless] /" >/dev/console
    docker rm -f ws-rootless >/dev/null 2>&1
else
    result rootless.run 0 "$c"
fi
mark rootless.checked

say "VM root cgroup before: $vm_root_procs_before, after: $(sort /sys/fs/cgroup/cgroup.procs | xargs)"
mark stopped
echo "WSVM-DONE" >"$results"
sync
