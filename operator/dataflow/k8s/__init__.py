"""The Kubernetes way in: a Kopf operator reconciling DataFlowSchema resources."""
