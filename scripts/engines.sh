#!/usr/bin/env bash
# Flink and Spark clusters on loopback, as on Kubernetes: a Flink session cluster (one JobManager,
# two TaskManagers) and a Spark standalone cluster (a master, two workers), each JVM its own
# process, each with Beam's job server for the engine in front; stopped by their process ids.
#
#   scripts/engines.sh fetch  ENGINE[-runtime|-job-server]     # ENGINE: flink or spark
#   scripts/engines.sh start  ENGINE[-cluster|-job-server]     # ENGINE alone: cluster + job server
#   scripts/engines.sh stop   ENGINE                           # every process it started, by pid file
#   scripts/engines.sh status ENGINE
#   scripts/engines.sh check  ENGINE-cluster [N]               # a job of the engine's own API on 2 workers
#
# Every version is pinned in the block below and nowhere else. Downloads are cached under
# KUBETFX_ENGINES_CACHE (default ~/.cache/kubetfx/engines):
#   - Flink's runtime from PyPI: the `apache-flink-libraries` sdist is Flink's binary
#     distribution's lib/ (flink-dist, table, log4j) plus bin/bash-java-utils.jar. (Maven Central
#     as reached here serves no `flink-dist`; Flink's tarball lives on archive.apache.org.)
#   - Spark's runtime from PyPI: the `pyspark` sdist holds Spark's jars/, bin/ and sbin/.
#   - Beam's job servers `org.apache.beam:beam-runners-flink-<minor>-job-server:<beam>` and
#     `beam-runners-spark-3-job-server:<beam>` from Maven Central with `mvn dependency:get`. At
#     the time of writing the registry reached here refuses both: `fetch` then exits 3.
#
# State lives in KUBETFX_ENGINES_RUN/<engine> (default <cache>/run/<engine>): conf/, log/, *.pid,
# ports.env. Ports (environment, defaults in brackets): FLINK_REST_PORT [8081], FLINK_RPC_PORT
# [6123], SPARK_MASTER_PORT [7077], SPARK_MASTER_UI_PORT [8080] (workers' UIs: ports the OS
# picks), BEAM_JOB_PORT [8099], BEAM_ARTIFACT_PORT [8098], BEAM_EXPANSION_PORT [8097]. Memory:
# FLINK_JM_MEMORY [768m], FLINK_TM_MEMORY [1280m] (Flink's process sizes), SPARK_WORKER_MEMORY
# [1g] (for executors), 512m heap for the Spark master, workers and each job server.
#
# The Python SDK workers are not started here: run a Beam worker pool
# (`python -m apache_beam.runners.worker.worker_pool_main --service_port=P`) and pass
#   --runner=PortableRunner --job_endpoint=localhost:$BEAM_JOB_PORT
#   --environment_type=EXTERNAL --environment_config=localhost:P [--parallelism=2 on Flink]
# as beam_args (docs/scale-out.md).
set -euo pipefail

# --- versions: the one place ---------------------------------------------------------------
BEAM_VERSION=2.72.0      # = apache-beam in uv.lock (tests/test_engines.py checks)
FLINK_VERSION=1.20.3     # Beam 2.72 runs Flink 1.17-1.20
FLINK_MINOR=1.20
TASK_MANAGERS=2
SLOTS_PER_TASK_MANAGER=1
SPARK_VERSION=3.5.7      # a Spark 3 release for beam-runners-spark-3; Scala 2.12 as its jars
SPARK_WORKERS=2
SPARK_WORKER_CORES=1
# ---------------------------------------------------------------------------------------------

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${KUBETFX_ENGINES_CACHE:-$HOME/.cache/kubetfx/engines}"
flink_home="$cache/flink-$FLINK_VERSION"
spark_home="$cache/spark-$SPARK_VERSION"
cmd="${1:-}"
target="${2:-flink}"
engine="${target%%-*}"
case "$engine" in
  flink) job_server_artifact="beam-runners-flink-$FLINK_MINOR-job-server" ;;
  spark) job_server_artifact="beam-runners-spark-3-job-server" ;;
  *) sed -n '2,10p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
esac
job_server_jar="$cache/$job_server_artifact-$BEAM_VERSION.jar"
run="${KUBETFX_ENGINES_RUN:-$cache/run}/$engine"
rest_port="${FLINK_REST_PORT:-8081}"
rpc_port="${FLINK_RPC_PORT:-6123}"
job_port="${BEAM_JOB_PORT:-8099}"
artifact_port="${BEAM_ARTIFACT_PORT:-8098}"
expansion_port="${BEAM_EXPANSION_PORT:-8097}"
jm_memory="${FLINK_JM_MEMORY:-768m}"
tm_memory="${FLINK_TM_MEMORY:-1280m}"
job_server_heap="${JOB_SERVER_HEAP:-512m}"
spark_master_port="${SPARK_MASTER_PORT:-7077}"
spark_master_ui_port="${SPARK_MASTER_UI_PORT:-8080}"
spark_worker_memory="${SPARK_WORKER_MEMORY:-1g}"
start_timeout_s="${ENGINES_START_TIMEOUT_S:-120}"

# What Flink's own config.yaml passes every JVM on Java 17 (env.java.opts.all): Flink and Beam
# reach into the JDK's internals (closure cleaning, Kryo, Netty).
java_opens=(
  --add-exports=java.base/sun.net.util=ALL-UNNAMED --add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED
  --add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.net=ALL-UNNAMED
  --add-opens=java.base/java.io=ALL-UNNAMED --add-opens=java.base/java.nio=ALL-UNNAMED
  --add-opens=java.base/sun.nio.ch=ALL-UNNAMED --add-opens=java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens=java.base/java.text=ALL-UNNAMED --add-opens=java.base/java.time=ALL-UNNAMED
  --add-opens=java.base/java.util=ALL-UNNAMED --add-opens=java.base/java.util.concurrent=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED
)

say() { echo "engines.sh: $*" >&2; }
die() { say "$*"; exit 1; }

need_java() { command -v java >/dev/null 2>&1 || die "java is not installed (Java 17 runs Flink and Spark)"; }

pip_download() {  # pip of the machine: the project's venv has no pip, and these are no project dependencies
  if command -v pip >/dev/null 2>&1; then pip download --quiet --no-deps "$@"; else python3 -m pip download --quiet --no-deps "$@"; fi
}

python_bin() {
  if [[ -x "$repo_root/.venv/bin/python" ]]; then echo "$repo_root/.venv/bin/python"; else command -v python3; fi
}

# --- fetch ---------------------------------------------------------------------------------
fetch_flink_runtime() {
  [[ -f "$flink_home/lib/flink-dist-$FLINK_VERSION.jar" ]] && return 0
  local dl="$cache/pypi" sdist="apache-flink-libraries-$FLINK_VERSION"
  mkdir -p "$dl"
  if [[ ! -f "$dl/$sdist.tar.gz" ]]; then
    say "downloading $sdist from PyPI (230 MB; Flink's lib/)"
    pip_download -d "$dl" "apache-flink-libraries==$FLINK_VERSION" \
      || die "cannot download apache-flink-libraries==$FLINK_VERSION from PyPI"
  fi
  local tmp
  tmp="$(mktemp -d "$cache/.flink-XXXXXX")"
  tar -xzf "$dl/$sdist.tar.gz" -C "$tmp" "$sdist/deps/lib" "$sdist/deps/bin"
  rm -rf "$flink_home"
  mv "$tmp/$sdist/deps" "$flink_home"
  rm -rf "$tmp"
  [[ -f "$flink_home/lib/flink-dist-$FLINK_VERSION.jar" ]] || die "no flink-dist-$FLINK_VERSION.jar in $sdist"
}

fetch_spark_runtime() {
  [[ -f "$spark_home/jars/spark-core_2.12-$SPARK_VERSION.jar" ]] && return 0
  local dl="$cache/pypi" sdist="pyspark-$SPARK_VERSION"
  mkdir -p "$dl"
  if [[ ! -f "$dl/$sdist.tar.gz" ]]; then
    say "downloading $sdist from PyPI (320 MB; Spark's jars/)"
    pip_download -d "$dl" "pyspark==$SPARK_VERSION" \
      || die "cannot download pyspark==$SPARK_VERSION from PyPI"
  fi
  local tmp
  tmp="$(mktemp -d "$cache/.spark-XXXXXX")"
  tar -xzf "$dl/$sdist.tar.gz" -C "$tmp" "$sdist/deps/jars" "$sdist/deps/bin" "$sdist/deps/sbin"
  touch "$tmp/$sdist/deps/RELEASE"  # Spark's launcher: a release layout (jars/), not a source tree
  rm -rf "$spark_home"
  mv "$tmp/$sdist/deps" "$spark_home"
  rm -rf "$tmp"
  [[ -f "$spark_home/jars/spark-core_2.12-$SPARK_VERSION.jar" ]] || die "no spark-core jar in $sdist"
}

fetch_job_server() {
  [[ -f "$job_server_jar" ]] && return 0
  command -v mvn >/dev/null 2>&1 || die "mvn is not installed (it fetches Beam's job servers)"
  local artifact="org.apache.beam:$job_server_artifact:$BEAM_VERSION"
  local repo="$cache/m2"
  say "downloading $artifact from Maven Central"
  if ! mvn -B -q -U "-Dmaven.repo.local=$repo" dependency:get "-Dartifact=$artifact" -Dtransitive=false \
    >"$cache/$job_server_artifact-fetch.log" 2>&1; then
    local why
    why="$(grep -m1 -o 'Could not [a-z]* artifact [^ ]*' "$cache/$job_server_artifact-fetch.log" || echo 'see the log')"
    say "Maven Central does not serve $artifact ($why; log: $cache/$job_server_artifact-fetch.log)"
    exit 3
  fi
  cp "$repo/org/apache/beam/$job_server_artifact/$BEAM_VERSION/$job_server_artifact-$BEAM_VERSION.jar" \
    "$job_server_jar"
}

# --- processes -----------------------------------------------------------------------------
alive() { [[ -f "$run/$1.pid" ]] && kill -0 "$(cat "$run/$1.pid")" 2>/dev/null; }

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {  # wait_for NAME CHECK...: until CHECK succeeds, the process NAME dies, or the timeout
  local name="$1"; shift
  local deadline=$((SECONDS + start_timeout_s))
  until "$@"; do
    alive "$name" || { tail -n 40 "$run/log/$name.log" >&2 || true; die "$name exited while starting"; }
    ((SECONDS < deadline)) || { tail -n 40 "$run/log/$name.log" >&2 || true; die "$name did not start in ${start_timeout_s}s"; }
    sleep 1
  done
}

write_flink_conf() {
  mkdir -p "$run/conf" "$run/log" "$run/tmp"
  cat >"$run/conf/config.yaml" <<EOF
# written by scripts/engines.sh: a session cluster on loopback
jobmanager.rpc.address: localhost
jobmanager.rpc.port: $rpc_port
jobmanager.bind-host: localhost
taskmanager.bind-host: localhost
taskmanager.host: localhost
rest.address: localhost
rest.bind-address: localhost
rest.port: $rest_port
jobmanager.memory.process.size: $jm_memory
taskmanager.memory.process.size: $tm_memory
taskmanager.memory.managed.fraction: 0.2
taskmanager.numberOfTaskSlots: $SLOTS_PER_TASK_MANAGER
parallelism.default: $((TASK_MANAGERS * SLOTS_PER_TASK_MANAGER))
io.tmp.dirs: $run/tmp
web.tmpdir: $run/tmp
jobmanager.execution.failover-strategy: region
restart-strategy.type: none
env.java.opts.all: ${java_opens[*]}
EOF
  cat >"$run/conf/log4j.properties" <<'EOF'
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = MainAppender
appender.main.name = MainAppender
appender.main.type = File
appender.main.fileName = ${sys:log.file}
appender.main.layout.type = PatternLayout
appender.main.layout.pattern = %d{yyyy-MM-dd HH:mm:ss,SSS} %-5p %-60c %x - %m%n
logger.netty.name = org.jboss.netty.channel.DefaultChannelPipeline
logger.netty.level = OFF
EOF
}

# Flink's own bin/ scripts size each JVM with BashJavaUtils; so does this.
flink_jvm_params() {  # flink_jvm_params GET_JM_RESOURCE_PARAMS|GET_TM_RESOURCE_PARAMS -> 2 lines
  java -cp "$flink_home/bin/bash-java-utils.jar:$flink_home/lib/*" \
    org.apache.flink.runtime.util.bash.BashJavaUtils "$1" --configDir "$run/conf" 2>/dev/null \
    | sed -n 's/^BASH_JAVA_UTILS_EXEC_RESULT://p'
}

start_flink_process() {  # start_flink_process NAME MAIN_CLASS JVM_PARAMS DYNAMIC_PARAMS
  local name="$1" main="$2" jvm="$3" dyn="$4"
  alive "$name" && die "$name is already running (pid $(cat "$run/$name.pid")); stop it first"
  # shellcheck disable=SC2086 # JVM_PARAMS and DYNAMIC_PARAMS are word lists from BashJavaUtils
  nice -n 5 java $jvm "${java_opens[@]}" \
    "-Dlog.file=$run/log/$name.log" "-Dlog4j.configurationFile=file:$run/conf/log4j.properties" \
    -cp "$flink_home/lib/*" "$main" --configDir "$run/conf" $dyn \
    >"$run/log/$name.out" 2>&1 </dev/null &
  echo $! >"$run/$name.pid"
}

registered_task_managers() {
  curl -sf "http://localhost:$rest_port/taskmanagers" 2>/dev/null \
    | "$(python_bin)" -c 'import json,sys; print(len(json.load(sys.stdin)["taskmanagers"]))' 2>/dev/null || echo 0
}

all_task_managers() { [[ "$(registered_task_managers)" == "$TASK_MANAGERS" ]]; }

start_flink_cluster() {
  need_java
  fetch_flink_runtime
  write_flink_conf
  local params
  mapfile -t params < <(flink_jvm_params GET_JM_RESOURCE_PARAMS)
  ((${#params[@]} >= 1)) || die "BashJavaUtils could not size the JobManager (conf: $run/conf/config.yaml)"
  start_flink_process jobmanager org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint \
    "${params[0]}" "${params[1]:-}"
  wait_for jobmanager listening "$rest_port"
  mapfile -t params < <(flink_jvm_params GET_TM_RESOURCE_PARAMS)
  ((${#params[@]} >= 2)) || die "BashJavaUtils could not size the TaskManagers"
  local i
  for ((i = 1; i <= TASK_MANAGERS; i++)); do
    start_flink_process "taskmanager-$i" org.apache.flink.runtime.taskexecutor.TaskManagerRunner \
      "${params[0]}" "${params[1]} -Dtaskmanager.resource-id=taskmanager-$i"
  done
  for ((i = 1; i <= TASK_MANAGERS; i++)); do alive "taskmanager-$i" || die "taskmanager-$i exited"; done
  wait_for "taskmanager-$TASK_MANAGERS" all_task_managers
  say "Flink $FLINK_VERSION: JobManager (pid $(cat "$run/jobmanager.pid")) and $TASK_MANAGERS TaskManagers, REST http://localhost:$rest_port"
}

start_job_server() {
  need_java
  if [[ ! -f "$job_server_jar" ]]; then fetch_job_server; fi
  alive job-server && die "the job server is already running (pid $(cat "$run/job-server.pid"))"
  mkdir -p "$run/log"
  local engine_args
  if [[ "$engine" == flink ]]; then
    engine_args=("--flink-master=localhost:$rest_port" "--flink-conf-dir=$run/conf")
  else
    engine_args=("--spark-master-url=spark://localhost:$spark_master_port")
  fi
  nice -n 5 java "-Xmx$job_server_heap" "${java_opens[@]}" -jar "$job_server_jar" "${engine_args[@]}" \
    "--job-host=localhost" "--job-port=$job_port" \
    "--artifact-port=$artifact_port" "--expansion-port=$expansion_port" \
    >"$run/log/job-server.log" 2>&1 </dev/null &
  echo $! >"$run/job-server.pid"
  wait_for job-server listening "$job_port"
  say "Beam $BEAM_VERSION $engine job server (pid $(cat "$run/job-server.pid")) on localhost:$job_port"
}

write_ports() {
  mkdir -p "$run"
  cat >"$run/ports.env" <<EOF
FLINK_VERSION=$FLINK_VERSION
SPARK_VERSION=$SPARK_VERSION
BEAM_VERSION=$BEAM_VERSION
FLINK_REST_PORT=$rest_port
SPARK_MASTER_PORT=$spark_master_port
SPARK_MASTER_UI_PORT=$spark_master_ui_port
BEAM_JOB_PORT=$job_port
BEAM_ARTIFACT_PORT=$artifact_port
BEAM_EXPANSION_PORT=$expansion_port
EOF
}

stop_one() {  # SIGTERM by pid file, SIGKILL after 15 s
  local name="$1" pid
  [[ -f "$run/$name.pid" ]] || return 0
  pid="$(cat "$run/$name.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 30; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$run/$name.pid"
}

stop_engine() {  # the job server, the workers, then the master / JobManager
  stop_one job-server
  local f
  for f in "$run"/taskmanager-*.pid "$run"/worker-*.pid; do [[ -e "$f" ]] && stop_one "$(basename "$f" .pid)"; done
  stop_one jobmanager
  stop_one master
}

status_engine() {
  local f name
  for f in "$run"/*.pid; do
    [[ -e "$f" ]] || continue
    name="$(basename "$f" .pid)"
    if alive "$name"; then echo "$name running pid $(cat "$f")"; else echo "$name dead (pid file $f)"; fi
  done
  if [[ "$engine" == flink ]]; then
    echo "registered TaskManagers: $(registered_task_managers)"
  else
    echo "alive Spark workers: $(alive_spark_workers)"
  fi
}

# A Flink job of Flink's own API (no Beam) at parallelism 2: the cluster runs work on both
# TaskManagers. Compiled here from scripts/engines/SpreadCheck.java against flink-dist.
check_flink_cluster() {
  need_java
  local src="$repo_root/scripts/engines/SpreadCheck.java" build="$run/spread-check"
  mkdir -p "$build/classes"
  javac -nowarn -d "$build/classes" -cp "$flink_home/lib/*" "$src"
  (cd "$build/classes" && jar cf "$build/spread-check.jar" ./*.class)
  FLINK_CONF_DIR="$run/conf" nice -n 5 java -Xmx256m "${java_opens[@]}" "-Dlog.file=$run/log/client.log" \
    "-Dlog4j.configurationFile=file:$run/conf/log4j.properties" -cp "$flink_home/lib/*" \
    org.apache.flink.client.cli.CliFrontend run -m "localhost:$rest_port" -p "$TASK_MANAGERS" \
    -c SpreadCheck "$build/spread-check.jar" "${1:-100000}"
}

# --- Spark standalone ---------------------------------------------------------------------------
# Started through Spark's own bin/spark-class (it execs java with Spark's launcher's command line,
# Java 17's --add-opens included), so each pid file holds the JVM's pid.
start_spark_process() {  # start_spark_process NAME MAIN_CLASS ARGS...
  local name="$1"; shift
  alive "$name" && die "$name is already running (pid $(cat "$run/$name.pid")); stop it first"
  SPARK_HOME="$spark_home" SPARK_CONF_DIR="$run/conf" SPARK_LOG_DIR="$run/log" \
    SPARK_LOCAL_IP=127.0.0.1 SPARK_LOCAL_DIRS="$run/tmp" SPARK_DAEMON_MEMORY=512m \
    nice -n 5 "$spark_home/bin/spark-class" "$@" >"$run/log/$name.log" 2>&1 </dev/null &
  echo $! >"$run/$name.pid"
}

alive_spark_workers() {
  curl -sf "http://localhost:$spark_master_ui_port/json/" 2>/dev/null \
    | "$(python_bin)" -c 'import json,sys; print(sum(w["state"] == "ALIVE" for w in json.load(sys.stdin)["workers"]))' \
      2>/dev/null || echo 0
}

all_spark_workers() { [[ "$(alive_spark_workers)" == "$SPARK_WORKERS" ]]; }

start_spark_cluster() {
  need_java
  fetch_spark_runtime
  mkdir -p "$run/conf" "$run/log" "$run/tmp"
  printf 'spark.ui.enabled false\n' >"$run/conf/spark-defaults.conf"
  start_spark_process master org.apache.spark.deploy.master.Master --host localhost \
    --port "$spark_master_port" --webui-port "$spark_master_ui_port"
  wait_for master listening "$spark_master_port"
  local i
  for ((i = 1; i <= SPARK_WORKERS; i++)); do
    mkdir -p "$run/work-$i"
    start_spark_process "worker-$i" org.apache.spark.deploy.worker.Worker --host localhost \
      --webui-port 0 --cores "$SPARK_WORKER_CORES" --memory "$spark_worker_memory" \
      --work-dir "$run/work-$i" "spark://localhost:$spark_master_port"
  done
  wait_for "worker-$SPARK_WORKERS" all_spark_workers
  say "Spark $SPARK_VERSION: master (pid $(cat "$run/master.pid")) spark://localhost:$spark_master_port and $SPARK_WORKERS workers"
}

# A Spark job of Spark's own Java API on 2 executors (one per worker): scripts/engines/SparkSpreadCheck.java.
check_spark_cluster() {
  need_java
  local src="$repo_root/scripts/engines/SparkSpreadCheck.java" build="$run/spread-check"
  mkdir -p "$build/classes"
  javac -nowarn -d "$build/classes" -cp "$spark_home/jars/*" "$src"
  (cd "$build/classes" && jar cf "$build/spread-check.jar" ./*.class)
  SPARK_HOME="$spark_home" SPARK_CONF_DIR="$run/conf" SPARK_LOCAL_IP=127.0.0.1 \
    nice -n 5 "$spark_home/bin/spark-submit" --master "spark://localhost:$spark_master_port" \
    --class SparkSpreadCheck --total-executor-cores "$((SPARK_WORKERS * SPARK_WORKER_CORES))" \
    --executor-cores "$SPARK_WORKER_CORES" --executor-memory 512m --driver-memory 512m \
    "$build/spread-check.jar" "${1:-100000}"
}

case "$cmd/$target" in
  fetch/flink) fetch_flink_runtime; fetch_job_server ;;
  fetch/flink-runtime) fetch_flink_runtime ;;
  fetch/flink-job-server | fetch/spark-job-server) fetch_job_server ;;
  fetch/spark) fetch_spark_runtime; fetch_job_server ;;
  fetch/spark-runtime) fetch_spark_runtime ;;
  start/spark) start_spark_cluster; start_job_server; write_ports ;;
  start/spark-cluster) start_spark_cluster; write_ports ;;
  start/spark-job-server) start_job_server; write_ports ;;
  start/flink) start_flink_cluster; start_job_server; write_ports ;;
  start/flink-cluster) start_flink_cluster; write_ports ;;
  start/flink-job-server) start_job_server; write_ports ;;
  stop/flink | stop/spark) stop_engine ;;
  status/flink | status/spark) status_engine ;;
  check/flink-cluster) check_flink_cluster "${3:-100000}" ;;
  check/spark-cluster) check_spark_cluster "${3:-100000}" ;;
  *) sed -n '2,10p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
esac
