#!/usr/bin/env bash
# The scaling suite: runs `augur generate` over a matrix of layouts and settings, keeps one
# JSON record per cell (generate --stats-json plus the cell's settings), and renders a
# markdown table, a node-boundary table and (when gnuplot is installed) PNG plots.
# Usage: cluster/scale.sh [options] OUTDIR   (cluster/scale.sh --help lists them)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
source "$here/netns.sh"

usage() {
  cat <<'EOF'
usage: cluster/scale.sh [options] OUTDIR

Runs augur generate once per cell of the matrix (every combination of the lists below),
printing which cell it is on, and writes to OUTDIR:
  cells/CELL.json   the run's --stats-json record plus "cell" (its settings and command)
  cells/CELL.log    the run's stderr; cells/CELL.out its stdout (rank 0's generated ids)
  results.json      every cell's record, in order
  table.md          one row per cell: acceptance, tokens/round, tok/s, ms/token and the
                    round's time split (draft wait, verify, of which all-reduce, comm, sampling)
  boundary.md       cells that differ only in nodes / net / delay / rate against the same
                    layout on one node over shared memory: what crossing a node boundary
                    adds to the verification round
  plots/*.png       tokens/s, ms per token and the round split (needs gnuplot; without it
                    the suite says so and skips them)
  bench/*.csv, projection.md  with --project: augur bench of each target shard and the
                    draft, and augur project's prediction beside every measured cell

matrix (comma-separated lists):
  --tp LIST          target ranks T (default 1,2)
  --replicas LIST    target groups per job, each with its draft rank, the prompts spread over
                     them (default 1); tok/s is then the whole job's, the round split replica 0's
  --rule LIST        draft rules: fixed, heuristic, static, moving-average, cumulative (default fixed)
  --gamma LIST       gamma (default 4)
  --acceptance LIST  real (the shipped weights) or A in [0,1]: dummy weights at synthetic
                     acceptance A (default real)
  --nodes LIST       simulated nodes: target rank t on node t*N/T, the draft on the last (default 1)
  --net LIST         shm: one node, Open MPI's default transports; netns: every node a network
                     namespace, TCP over veth links (root, iproute2); sim: every node a simulated
                     host (generate --simulate-hosts N: its own NCCL_HOSTID, so NCCL joins the
                     nodes over loopback sockets, even on one GPU) (default shm)
  --delay-ms LIST    netns only: one-way delay added to each node's link with tc netem (default 0)
  --rate LIST        netns only: cap each node's link (tc syntax, e.g. 1gbit; default none)
settings:
  --target DIR, --draft DIR   default models/target, models/draft
  --prompts N        first N lines of models/heldout_prompts.txt, or --prompts-file FILE (default 2)
  --max-tokens N     per request (default 32)
  --threads N        per rank (default 1)
  --repeat K         run each cell K times and keep the run of median tokens/s (default 1)
  --baseline         also run target-only in each cell (generate --compare-baseline)
  --project          also bench the shards and run augur project against the cells
  --cell-timeout S   give up on a cell after S seconds (default 300)
  --augur BIN        the augur binary (default: build/launcher/augur, else augur on PATH)
  --no-plots         skip the PNG plots
environment:
  AUGUR_SCALE_LAUNCH=mpirun (default) runs mpirun directly; =launch runs `augur launch`
  AUGUR_DEVICE       cpu (default) or cuda. On cuda, target ranks that share a GPU without
                     simulated hosts between them all-reduce over MPI (--tp-comm mpi): NCCL
                     refuses two ranks of one node on one GPU
  MPIRUN_ARGS        extra mpirun flags (default on this machine: --oversubscribe
                     --mca mpi_yield_when_idle 1 --bind-to none)
EOF
}

tp_list=1,2 replicas_list=1 rule_list=fixed gamma_list=4 acc_list=real nodes_list=1 net_list=shm
delay_list=0 rate_list=none
target="$root/models/target" draft="$root/models/draft" n_prompts=2 prompts_file="" max_tokens=32 threads=1
repeat=1 baseline=0 project=0 cell_timeout=300 plots=1 augur="" out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --tp) tp_list=$2; shift ;;
    --replicas) replicas_list=$2; shift ;;
    --rule) rule_list=$2; shift ;;
    --gamma) gamma_list=$2; shift ;;
    --acceptance) acc_list=$2; shift ;;
    --nodes) nodes_list=$2; shift ;;
    --net) net_list=$2; shift ;;
    --delay-ms) delay_list=$2; shift ;;
    --rate) rate_list=$2; shift ;;
    --target) target=$2; shift ;;
    --draft) draft=$2; shift ;;
    --prompts) n_prompts=$2; shift ;;
    --prompts-file) prompts_file=$2; shift ;;
    --max-tokens) max_tokens=$2; shift ;;
    --threads) threads=$2; shift ;;
    --repeat) repeat=$2; shift ;;
    --baseline) baseline=1 ;;
    --project) project=1 ;;
    --cell-timeout) cell_timeout=$2; shift ;;
    --augur) augur=$2; shift ;;
    --no-plots) plots=0 ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "scale.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) [ -z "$out" ] || { echo "scale.sh: one OUTDIR only (got $out and $1)" >&2; exit 2; }; out=$1 ;;
  esac
  shift
done
[ -n "$out" ] || { usage >&2; exit 2; }
die() { echo "scale.sh: $*" >&2; exit 2; }
command -v jq >/dev/null || die "needs jq (apt-get install jq)"
if [ -z "$augur" ]; then
  if [ -x "$root/build/launcher/augur" ]; then augur="$root/build/launcher/augur"; else augur=$(command -v augur || true); fi
fi
[ -x "$augur" ] || die "no augur binary (build it, or give --augur BIN)"
launch_mode=${AUGUR_SCALE_LAUNCH:-mpirun}
case "$launch_mode" in mpirun | launch) ;; *) die "AUGUR_SCALE_LAUNCH=$launch_mode: mpirun or launch" ;; esac
for d in "$target" "$draft"; do [ -r "$d/config.json" ] || die "$d/config.json not found"; done
case "$repeat$max_tokens$threads$cell_timeout" in *[!0-9]*) die "--repeat, --max-tokens, --threads, --cell-timeout take integers" ;; esac
split() { tr ',' ' ' <<<"$1"; }
for a in $(split "$acc_list"); do
  [ "$a" = real ] || awk -v a="$a" 'BEGIN { exit !(a ~ /^[0-9.]+$/ && a >= 0 && a <= 1) }' ||
    die "--acceptance $a: real or a number in [0,1]"
done
for n in $(split "$net_list"); do
  [ "$n" = shm ] || [ "$n" = netns ] || [ "$n" = sim ] || die "--net $n: shm, netns or sim"
done

mkdir -p "$out/cells"
out=$(cd "$out" && pwd)
if [ -z "$prompts_file" ]; then
  prompts_file="$out/prompts.txt"
  head -n "$n_prompts" "$root/models/heldout_prompts.txt" >"$prompts_file"
fi
[ -s "$prompts_file" ] || die "no prompts in $prompts_file"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=passive NCCL_NVLS_ENABLE=0
export AUGUR_DEVICE=${AUGUR_DEVICE:-cpu}
read -r -a mpirun_extra <<<"${MPIRUN_ARGS:---oversubscribe --mca mpi_yield_when_idle 1 --bind-to none}"

# The namespaces are made once for the largest node count and kept for every netns cell.
netns_dir="$out/.netns"
netns_ready=0
cleanup() { [ "$netns_ready" = 0 ] || netns_down "$netns_dir"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# slots_per_node T N R: how many of the job's ranks land on each of N nodes, replica by
# replica: target rank t of a group on node t*N/T, its draft on the last node.
slots_per_node() {
  local t=$1 n=$2 r=$3 i k
  local -a s
  for ((i = 0; i < n; i++)); do s[i]=0; done
  for ((k = 0; k < r; k++)); do
    for ((i = 0; i < t; i++)); do s[i * n / t]=$((s[i * n / t] + 1)); done
    s[n - 1]=$((s[n - 1] + 1))
  done
  echo "${s[*]}"
}

# launch_cell: runs the cell's generate with its layout. The one place that knows how a job
# is started: AUGUR_SCALE_LAUNCH=launch switches every cell to `augur launch`.
launch_cell() {
  local stats=$1 log=$2
  shift 2
  local -a gen=("$@") cmd
  if [ "$launch_mode" = launch ]; then
    # the layout and the models go in the config; the rest of the cell's flags after --
    local -a rest=() k
    for ((k = 0; k < ${#gen[@]}; k++)); do
      case "${gen[k]}" in
        --draft) k=$((k + 1)) ;;
        --simulate-hosts) k=$((k + 1)) ;;
        *) rest+=("${gen[k]}") ;;
      esac
    done
    jq -n --arg t "$target" --arg d "$draft" --argjson tp "$tp" --argjson r "$replicas" --argjson n "$nodes" \
      --arg sim "$net" '{target: $t, draft: $d, tp: $tp, replicas: $r} +
        (if $sim == "sim" then {"simulate-hosts": $n} else {} end)' >"$cell_dir/$cell.launch.json"
    cmd=("$augur" launch "$cell_dir/$cell.launch.json" -- "${rest[@]}" --stats-json "$stats")
  else
    cmd=(mpirun "${mpirun_extra[@]}" "${net_args[@]}" -np "$ranks" "$augur" generate --target "$target"
         --replicas "$replicas" "${gen[@]}" --stats-json "$stats")
  fi
  printf '%q ' "${cmd[@]}" >"$log.cmd"
  timeout "$cell_timeout" "${cmd[@]}" >"$log.out" 2>"$log"
}

cells=()
total=0
for tp in $(split "$tp_list"); do for replicas in $(split "$replicas_list"); do for rule in $(split "$rule_list"); do
for gamma in $(split "$gamma_list"); do for acc in $(split "$acc_list"); do for nodes in $(split "$nodes_list"); do
for net in $(split "$net_list"); do for delay in $(split "$delay_list"); do for rate in $(split "$rate_list"); do
  skip=""
  if [ "$net" = shm ] && [ "$nodes" != 1 ]; then skip="shm is one node; nodes > 1 need --net netns"
  elif [ "$net" != netns ] && { [ "$delay" != 0 ] || [ "$rate" != none ]; }; then skip="delay and rate need --net netns"
  elif [ "$net" = sim ] && [ "$nodes" = 1 ]; then skip="one simulated node is the shm cell (one node)"
  elif [ "$nodes" -gt $((tp + 1)) ]; then skip="more nodes than the $((tp + 1)) ranks of a group"
  fi
  cells+=("$tp $replicas $rule $gamma $acc $nodes $net $delay $rate|$skip")
  [ -n "$skip" ] || total=$((total + 1))
done; done; done; done; done; done; done; done; done
((total > 0)) || die "every cell of the matrix was skipped"

max_nodes=0
for c in "${cells[@]}"; do
  read -r tp replicas rule gamma acc nodes net delay rate <<<"${c%%|*}"
  [ -n "${c#*|}" ] || [ "$net" != netns ] || ((nodes <= max_nodes)) || max_nodes=$nodes
done
if ((max_nodes > 0)); then
  if ! why=$(netns_check); then
    die "--net netns: network namespaces are not available here: $why"
  fi
  netns_ready=1
  netns_up "$netns_dir" "$max_nodes" || die "could not make $max_nodes network namespaces"
  # A kernel without netem (or tbf) cannot run the delay (rate) cells: say so once, up front.
  no_delay="" no_rate=""
  no_delay=$(netns_qdisc "$netns_dir" 1 "") && no_delay=""
  no_rate=$(netns_qdisc "$netns_dir" 0 1gbit) && no_rate=""
  netns_qdisc "$netns_dir" 0 "" >/dev/null || true
  for k in "${!cells[@]}"; do
    read -r tp replicas rule gamma acc nodes net delay rate <<<"${cells[k]%%|*}"
    [ -z "${cells[k]#*|}" ] && [ "$net" = netns ] || continue
    if [ "$delay" != 0 ] && [ -n "$no_delay" ]; then
      cells[k]="${cells[k]%%|*}|this kernel cannot delay the links: $no_delay"; total=$((total - 1))
    elif [ "$rate" != none ] && [ -n "$no_rate" ]; then
      cells[k]="${cells[k]%%|*}|this kernel cannot cap the links: $no_rate"; total=$((total - 1))
    fi
  done
  ((total > 0)) || die "every cell of the matrix was skipped"
fi

cell_dir="$out/cells"
rm -f "$cell_dir"/*.json
i=0
qdisc_now="0 none"
echo "scale.sh: $total cell(s), $repeat run(s) each, $(wc -l <"$prompts_file") prompt(s) x $max_tokens tokens; augur: $augur" >&2
for c in "${cells[@]}"; do
  read -r tp replicas rule gamma acc nodes net delay rate <<<"${c%%|*}"
  skip=${c#*|}
  cell="t$tp-r$replicas-$rule-g$gamma-a$acc-n$nodes-$net-d$delay-$rate"
  if [ -n "$skip" ]; then
    echo "scale.sh: skip $cell: $skip" >&2
    continue
  fi
  i=$((i + 1))
  ranks=$((replicas * (tp + 1)))
  net_args=()
  if [ "$net" = netns ]; then
    if [ "$qdisc_now" != "$delay $rate" ]; then
      r=""; [ "$rate" = none ] || r=$rate
      if ! why=$(netns_qdisc "$netns_dir" "$delay" "$r"); then
        echo "scale.sh: skip $cell: this kernel cannot shape the links: $why" >&2
        i=$((i - 1)); total=$((total - 1)); qdisc_now=""
        continue
      fi
      qdisc_now="$delay $rate"
    fi
    # shellcheck disable=SC2046
    netns_hostfile "$netns_dir" "$cell_dir/$cell.hosts" $(slots_per_node "$tp" "$nodes" "$replicas")
    mapfile -t net_args < <(netns_mpirun_args "$netns_dir" "$cell_dir/$cell.hosts")
  fi
  gen=(--prompts-file "$prompts_file" --max-tokens "$max_tokens" --threads "$threads" --ids-only
       --draft-rule "$rule" --gamma "$gamma" --measure-comm)
  if [ "$acc" = real ]; then
    gen+=(--draft "$draft")
  else
    # Dummy weights of the pair's shapes: the draft's proposals are kept with probability A.
    gen+=(--draft "$draft" --load-format dummy --synthetic-acceptance "$acc" --tokenizer "$target/tokenizer.json")
  fi
  [ "$net" != sim ] || gen+=(--simulate-hosts "$nodes")
  # One GPU, several target ranks of one node (no simulated boundary between them): NCCL
  # refuses them, and placement lets them share the GPU only over MPI.
  if [ "$AUGUR_DEVICE" = cuda ] && ((tp > 1)) && [ "$net" != sim ]; then
    gen+=(--tp-comm mpi)
  fi
  [ "$baseline" = 0 ] || gen+=(--compare-baseline)
  runs=()
  for ((k = 1; k <= repeat; k++)); do
    echo "scale.sh: [cell $i/$total] $cell (T=$tp, replicas $replicas, $ranks ranks, $nodes node(s) over $net, delay $delay ms, rate $rate, $rule gamma $gamma, acceptance $acc) run $k/$repeat" >&2
    rj="$cell_dir/$cell.run$k.json"
    if ! launch_cell "$rj" "$cell_dir/$cell.run$k.log" "${gen[@]}"; then
      echo "scale.sh: cell $cell failed; its command: $(cat "$cell_dir/$cell.run$k.log.cmd")" >&2
      tail -n 20 "$cell_dir/$cell.run$k.log" >&2
      exit 1
    fi
    runs+=("$rj")
  done
  # Keep the run of median tokens/s; every run's figure stays in the record.
  jq -s --arg cell "$cell" --arg cmd "$(cat "$cell_dir/$cell.run1.log.cmd")" \
     --argjson tp "$tp" --argjson replicas "$replicas" --arg rule "$rule" --argjson gamma "$gamma" \
     --arg acc "$acc" --argjson nodes "$nodes" --arg net "$net" --argjson delay "$delay" --arg rate "$rate" \
     --arg launch "$launch_mode" '
    (sort_by(.runs[0].tokens_per_s)) as $s | $s[(length - 1) / 2 | floor] +
    {cell: {name: $cell, tp: $tp, replicas: $replicas, rule: $rule, gamma: $gamma, acceptance: $acc,
            nodes: $nodes, net: $net, delay_ms: $delay, rate: $rate, launch: $launch, command: $cmd,
            repeats: length, tokens_per_s_all: map(.runs[0].tokens_per_s)}}' "${runs[@]}" >"$cell_dir/$cell.json"
  mv "$cell_dir/$cell.run1.log" "$cell_dir/$cell.log"
  mv "$cell_dir/$cell.run1.log.out" "$cell_dir/$cell.out"
  rm -f "${runs[@]}" "$cell_dir/$cell".run*.log*
done

jq -s '.' $(for c in "${cells[@]}"; do
  read -r tp replicas rule gamma acc nodes net delay rate <<<"${c%%|*}"
  f="$cell_dir/t$tp-r$replicas-$rule-g$gamma-a$acc-n$nodes-$net-d$delay-$rate.json"
  [ -f "$f" ] && echo "$f"
done) >"$out/results.json"
bash "$here/scale_report.sh" "$out" "$plots"
if [ "$project" = 1 ]; then
  bash "$here/scale_project.sh" "$out" "$augur" "$target" "$draft" "$threads"
fi
echo "scale.sh: done: $out/table.md$( [ -f "$out/boundary.md" ] && echo ", $out/boundary.md")" >&2
