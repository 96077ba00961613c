"""The upstream Kubernetes control plane under the sandbox: build, certificates, command lines, start."""
