"""The sandbox's controller-manager: Job, ReplicaSet and Deployment controllers (pure decisions + I/O shells)."""
