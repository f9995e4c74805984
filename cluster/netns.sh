# Node boundaries on one machine (sourced by cluster/scale.sh and tests/mpi/netns_boundary.sh).
#
# Each simulated node is a Linux network namespace with one veth link into a bridge in the
# root namespace; Open MPI treats the namespaces' addresses as remote hosts, starts its
# daemon (orted) in each through a launch agent that runs `ip netns exec`, and the ranks
# talk over TCP across the veth links (--mca btl tcp,self), as ranks on separate machines
# would. `tc` on each namespace's link can add delay (netem) or cap the rate (tbf).
# Needs root and iproute2; netns_check says exactly what is missing.
#
#   netns_check                       exit 0 when namespaces and veth links can be made
#   netns_up DIR NODES                make NODES namespaces; DIR/agent, DIR/ips, DIR/names
#   netns_qdisc DIR DELAY_MS RATE     set every link's qdisc (0 and "" mean none)
#   netns_hostfile DIR FILE SLOTS...  a hostfile giving node i SLOTS[i] slots
#   netns_mpirun_args DIR HOSTFILE    prints the mpirun flags, one a line
#   netns_down DIR                    remove what netns_up made

# netns_check: prints why namespaces cannot be used here and returns 1, or returns 0.
netns_check() {
  local probe="augchk$$" out
  if ! command -v ip >/dev/null 2>&1; then
    echo "ip (iproute2) is not installed"
    return 1
  fi
  if ! out=$(ip netns add "$probe" 2>&1); then
    echo "ip netns add failed: $out"
    return 1
  fi
  if ! out=$(ip link add "${probe}a" type veth peer name "${probe}b" netns "$probe" 2>&1); then
    ip netns del "$probe" 2>/dev/null
    echo "ip link add ... type veth failed: $out"
    return 1
  fi
  ip link del "${probe}a" 2>/dev/null
  ip netns del "$probe"
  return 0
}

# netns_up DIR NODES: a bridge and NODES namespaces on a /24 chosen from the shell's pid
# (so that two suites on one machine do not collide); names start with aug<id>.
netns_up() {
  local dir=$1 nodes=$2 id=$(($$ % 60000)) i
  local prefix="aug$id" net="10.$((100 + id / 250 % 150)).$((id % 250)).0"
  mkdir -p "$dir"
  echo "$prefix" >"$dir/prefix"
  echo "${net%.0}.0/24" >"$dir/cidr"
  : >"$dir/ips"
  : >"$dir/names"
  ip link add "${prefix}br" type bridge || return 1
  ip addr add "${net%.0}.254/24" dev "${prefix}br" && ip link set "${prefix}br" up || return 1
  for ((i = 0; i < nodes; i++)); do
    local ns="${prefix}n$i" ip="${net%.0}.$((i + 1))"
    echo "$ip" >>"$dir/ips"
    echo "$ns" >>"$dir/names"
    ip netns add "$ns" || return 1
    ip link add "${prefix}v$i" type veth peer name eth0 netns "$ns" || return 1
    ip link set "${prefix}v$i" master "${prefix}br" up || return 1
    ip -n "$ns" addr add "$ip/24" dev eth0 || return 1
    ip -n "$ns" link set eth0 up && ip -n "$ns" link set lo up || return 1
  done
  # Open MPI's rsh launcher runs: AGENT [ssh options] HOST COMMAND...; the "host" is a
  # namespace's address, and the command (the orted) runs inside that namespace with the
  # caller's environment (ip netns exec keeps it). Every "node" has the same hostname and
  # /tmp, so each daemon gets a session directory of its own: with the shared default,
  # mpirun and the daemons race to create the same directories and a launch fails now
  # and then ("mkdir ... File exists").
  cat >"$dir/agent" <<EOF
#!/bin/bash
while [ \$# -gt 0 ] && [ "\${1#-}" != "\$1" ]; do shift; done
host=\$1; shift
ns=\$(paste -d' ' "$dir/ips" "$dir/names" | awk -v h="\$host" '\$1 == h { print \$2 }')
[ -n "\$ns" ] || { echo "netns agent: no namespace has address \$host" >&2; exit 1; }
mkdir -p "$dir/tmp-\$ns"
export OMPI_MCA_orte_tmpdir_base="$dir/tmp-\$ns"
exec ip netns exec "\$ns" /bin/sh -c "\$*"
EOF
  chmod +x "$dir/agent"
}

# netns_qdisc DIR DELAY_MS RATE: every namespace's link delays what it sends by DELAY_MS
# (netem; one way, so a round trip between two namespaces gains 2 x DELAY_MS) and/or caps
# it at RATE (tc syntax: 1gbit). Prints tc's error and returns 1 when the kernel lacks it.
netns_qdisc() {
  local dir=$1 delay=${2:-0} rate=${3:-} ns out
  while read -r ns; do
    tc -n "$ns" qdisc del dev eth0 root 2>/dev/null || true
    local spec=()
    if [ "$delay" != 0 ]; then
      spec=(netem delay "${delay}ms")
      [ -n "$rate" ] && spec+=(rate "$rate")
    elif [ -n "$rate" ]; then
      spec=(tbf rate "$rate" burst 64kb latency 10ms)
    fi
    ((${#spec[@]})) || continue
    if ! out=$(tc -n "$ns" qdisc add dev eth0 root "${spec[@]}" 2>&1); then
      echo "tc qdisc add dev eth0 root ${spec[*]} (namespace $ns): $out"
      return 1
    fi
  done <"$dir/names"
}

# netns_hostfile DIR FILE SLOTS...: node i (its address) gets SLOTS[i] slots; with
# mpirun's default by-slot mapping, ranks fill node 0's slots first, then node 1's...
netns_hostfile() {
  local dir=$1 file=$2 i=0 ip
  shift 2
  : >"$file"
  while read -r ip && [ $# -gt 0 ]; do
    [ "$1" -gt 0 ] && echo "$ip slots=$1" >>"$file"
    shift
    i=$((i + 1))
  done <"$dir/ips"
}

netns_mpirun_args() {
  local dir=$1 hostfile=$2 cidr
  cidr=$(cat "$dir/cidr")
  printf '%s\n' --hostfile "$hostfile" --mca plm_rsh_agent "$dir/agent" --mca plm_rsh_no_tree_spawn 1 \
    --mca oob_tcp_if_include "$cidr" --mca btl tcp,self --mca btl_tcp_if_include "$cidr"
}

netns_down() {
  local dir=$1 ns prefix
  [ -f "$dir/prefix" ] || return 0
  prefix=$(cat "$dir/prefix")
  if [ -f "$dir/names" ]; then
    while read -r ns; do ip netns del "$ns" 2>/dev/null || true; done <"$dir/names"
  fi
  ip link del "${prefix}br" 2>/dev/null || true
  rm -f "$dir/prefix"
}
