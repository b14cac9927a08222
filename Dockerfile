# govdata on the official Airflow 3 image: the project (DAGs' stages, standards, expectations,
# warehouse) is installed into the image's Python; DAG files are mounted or copied to /opt/airflow/dags.
FROM apache/airflow:3.3.2-python3.11

USER root
# /opt/govdata holds the lake and the demo world; created here so named volumes mounted on it
# start out owned by the airflow user.
RUN mkdir -p /opt/govdata/lake /opt/govdata/world /opt/govdata/docker \
 && chown -R airflow:0 /opt/govdata
USER airflow

WORKDIR /opt/govdata/src
COPY --chown=airflow:0 pyproject.toml README.md ./
COPY --chown=airflow:0 govdata ./govdata
COPY --chown=airflow:0 transforms ./transforms
COPY --chown=airflow:0 standards ./standards
COPY --chown=airflow:0 expectations ./expectations
COPY --chown=airflow:0 warehouse ./warehouse
COPY --chown=airflow:0 dags ./dags
# Pin Airflow to the image's version so pip never up- or downgrades it while resolving ours.
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" .

COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 docker /opt/govdata/docker
WORKDIR /opt/airflow

ENV GOVDATA_HOME=/opt/govdata \
    GOVDATA_LAKE=/opt/govdata/lake \
    GOVDATA_SOURCES_DIR=/opt/govdata/world/sources
