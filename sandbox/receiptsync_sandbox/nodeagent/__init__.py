"""The sandbox node agent: Pods of the project's own images run as local processes."""
