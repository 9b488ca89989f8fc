"""cloud-job-exporter: a Prometheus exporter for jobs on managed big-data platforms."""

__version__ = "0.1.0"
