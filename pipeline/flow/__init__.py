"""The flow: run every stage from one YAML file, resumably; markers, the work directory lock, status, the demo."""
