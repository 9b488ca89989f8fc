"""Checks of the operations kit: alert rules, dashboards, the Helm chart, Prometheus config."""
