#!/usr/bin/env bash
# Runs a job of jobs/ through spark-submit, with the Kafka and Cassandra connectors on
# the classpath and the connector settings taken from the configuration (ORDERLOG_*).
#
#   ./spark-submit.sh streaming
#   ./spark-submit.sh aggregate --date 2025-05-31
#   ./spark-submit.sh --master spark://spark-master:7077 --executor-memory 4g aggregate --from 2025-05-01 --to 2025-05-31
#
# spark-submit options come before the job name and pass through unchanged; the master
# defaults to ORDERLOG_SPARK_MASTER (local[2]). Everything after the job name goes to the job.
# The configuration is read by jobs/submit_args.py: a bad value stops here with one line.
set -euo pipefail
cd "$(dirname "$0")"

# The virtualenv of `make setup` (VENV, as in the Makefile); not $PYTHON, which names the
# interpreter `make setup` builds it with.
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] && [ -x "$VENV/bin/spark-submit" ] || { echo "spark-submit.sh: run \`make setup\` first" >&2; exit 2; }
PY="$(cd "$VENV/bin" && pwd)/python"
SPARK_SUBMIT="$(dirname "$PY")/spark-submit"

spark_opts=()
has_master=no
# Options of spark-submit that take no value; all others take one.
flag_opts=" --verbose --supervise --kill --status --help --version "
while [ $# -gt 0 ] && [[ "$1" == --* ]]; do
  case "$1" in
    --master|--master=*) has_master=yes ;;
  esac
  if [[ "$1" == *=* ]] || [[ "$flag_opts" == *" $1 "* ]]; then
    spark_opts+=("$1"); shift
  else
    [ $# -ge 2 ] || { echo "spark-submit.sh: $1 needs a value" >&2; exit 2; }
    spark_opts+=("$1" "$2"); shift 2
  fi
done

job=${1:-}
case "$job" in
  streaming|aggregate|code_origin) ;;
  *)
    echo "usage: ./spark-submit.sh [spark-submit options] <job> [job args]" >&2
    echo "jobs: streaming, aggregate, code_origin (where the driver and executors import the code from)" >&2
    exit 2 ;;
esac
shift

# The master, the connector jars and settings, and the project's package (built into
# build/py-files/ when the sources changed) as --py-files: the driver and the executors
# import the code from that package. A bad setting stops here with one line.
master_flag=()
[ "$has_master" = yes ] && master_flag=(--master-given)
generated_text=$("$PY" -m jobs.submit_args "${master_flag[@]}") || exit $?
mapfile -t generated <<< "$generated_text"
# Spark's logging at WARN (jobs/conf/log4j2.properties) unless you bring your own conf dir.
export SPARK_CONF_DIR=${SPARK_CONF_DIR:-$(pwd)/jobs/conf}
export PYSPARK_PYTHON=${PYSPARK_PYTHON:-$PY}
export PYSPARK_DRIVER_PYTHON=${PYSPARK_DRIVER_PYTHON:-$PY}
# Spark binds the driver's RPC, block manager and UI (and, through the workers, the
# executors') to the machine's first non-loopback address, the UI to every address, unless
# SPARK_LOCAL_IP names one; spark.ui.host does nothing in 3.5. Loopback unless you say
# otherwise (a driver that executors on other machines must reach needs a routable one).
export SPARK_LOCAL_IP=${SPARK_LOCAL_IP:-127.0.0.1}
# Python puts neither the script's folder nor the working directory (this checkout, where
# Spark starts its Python workers) on sys.path: the code comes from the shipped package.
export PYTHONSAFEPATH=1
exec "$SPARK_SUBMIT" "${spark_opts[@]}" "${generated[@]}" "jobs/$job.py" "$@"
