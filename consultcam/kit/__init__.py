"""What is not consultcam-specific: the retrying HTTP client and OAuth2 token cache every outbound
integration uses, the job primitives (enqueue by task name), and the typed states. Nothing here imports a
domain module."""
