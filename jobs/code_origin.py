"""./spark-submit.sh code_origin: where the Spark driver and its executors import this
project's code from, as one JSON line ({"driver": ..., "executors": [...]}). Each should
be inside the package spark-submit.sh ships (build/py-files/orderlog-*.zip, or an
executor's copy of it), never a working directory: a check of a deployment."""

from __future__ import annotations

import json
import sys

from jobs.session import build_session
from orderlog.config import load_or_exit


def main() -> int:
    settings = load_or_exit("code_origin")
    spark = build_session(settings, "orderlog-code-origin")
    try:

        def origin(_: object) -> str:
            import jobs  # on the executor: from whatever its sys.path holds

            return jobs.__file__

        cores = max(2, spark.sparkContext.defaultParallelism)
        executors = spark.sparkContext.parallelize(range(cores), cores).map(origin).distinct().collect()
        print(json.dumps({"driver": origin(None), "executors": sorted(executors)}))
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
