# The image of our Python services: ingest API, streaming and aggregate jobs, viewer,
# schema tool and replay generator. Kafka and Cassandra run from their own images.
#
#   docker compose build      (or: docker build --target app -t orderlog .)
#
# Stage 1 runs `make runtime` (a virtualenv of requirements.txt only, no test tools, and the
# Maven-resolved connector jars) with a JDK and Maven; stage 2 keeps only the result on a
# Java 17 *runtime*, as a non-root user, with the code the services run and the package
# ./spark-submit.sh ships to Spark, built once here.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# The official Spark image, the version of pyspark in requirements.txt: the Spark that the
# compose file's master runs, and whose distribution the worker stage below takes.
ARG SPARK_IMAGE=apache/spark:3.5.7

FROM ${SPARK_IMAGE} AS spark-dist

FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jdk-headless maven make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# Only what `make runtime` reads, so code changes do not re-resolve packages and jars.
COPY Makefile requirements.txt pyproject.toml ./
COPY local_stack ./local_stack
COPY orderlog ./orderlog
RUN make runtime && rm -rf "$HOME/.m2" "$HOME/.cache"

FROM ${PYTHON_IMAGE} AS app
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 --user-group orderlog
WORKDIR /app
# Same path as in the build stage: the virtualenv's scripts name their interpreter by it.
COPY --from=build /app/.venv /app/.venv
COPY --from=build /app/build/jars/spark /app/build/jars/spark
COPY --chown=orderlog:orderlog . .
RUN mkdir -p /data/checkpoints /app/var && chown -R orderlog:orderlog /data /app/var /app/build
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ORDERLOG_VAR_DIR=/app/var \
    ORDERLOG_CHECKPOINT_LOCATION=/data/checkpoints/streaming
USER orderlog
RUN python -m jobs.shipping
# Every service of docker-compose.yml sets its own command; this one explains itself.
CMD ["python", "-m", "orderlog.schema", "cql"]

# A Spark standalone worker: the official image's Spark distribution on this image, because
# executors must run the driver's Python minor version (3.11; the official python3 image
# has Ubuntu's 3.10) with pandas and pyarrow for the pandas UDF (the official image has
# neither). The jobs ship their code with --py-files; PYSPARK_PYTHON is this virtualenv's.
FROM app AS spark-worker
USER root
COPY --from=spark-dist /opt/spark /opt/spark
RUN mkdir -p /opt/spark/work && chown orderlog:orderlog /opt/spark/work
ENV SPARK_HOME=/opt/spark
USER orderlog
CMD ["/opt/spark/bin/spark-class", "org.apache.spark.deploy.worker.Worker", "spark://spark-master:7077"]
