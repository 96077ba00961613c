{{/*
Rules for ReceiptSyncs and their worker Jobs: a ClusterRole in cluster scope, a Role in the
watched namespace in namespace scope. Every rule says why the operator needs it.
*/}}
{{- define "receipt-sync.watchRules" }}
  # Watch ReceiptSyncs; patch only to release, at deletion, the finalizer older operators added;
  # update: kopf versions that PUT.
  - apiGroups: ["receipts.prosaas.pro"]
    resources: ["receiptsyncs"]
    verbs: ["get", "list", "watch", "patch", "update"]
  # The operator is the only writer of .status (phase, progress, conditions).
  - apiGroups: ["receipts.prosaas.pro"]
    resources: ["receiptsyncs/status"]
    verbs: ["get", "patch", "update"]
  # Worker Jobs are owned by their ReceiptSync with blockOwnerDeletion; clusters enforcing
  # OwnerReferencesPermissionEnforcement require update on the owner's finalizers for that.
  - apiGroups: ["receipts.prosaas.pro"]
    resources: ["receiptsyncs/finalizers"]
    verbs: ["update"]
  # One worker Job per attempt: create it, watch it (label selector: only ours), delete it on
  # cancel/timeout/resource deletion.
  - apiGroups: ["batch"]
    resources: ["jobs"]
    verbs: ["create", "delete", "get", "list", "watch"]
  # Worker pods (label selector: only ours): Kubernetes' own words for trouble (Unschedulable,
  # ErrImagePull, CreateContainerConfigError, OOMKilled) and a worker's termination message.
  - apiGroups: [""]
    resources: ["pods"]
    verbs: ["list", "watch"]
  {{- if eq .Values.tenancy.workerCredentials "perAttempt" }}
  # One Secret per ReceiptSync with its live worker attempts' own database, Redis and heartbeat
  # credentials, written by server-side apply before each attempt's Job (patch; create: an apply that
  # makes the Secret is also authorized as create). No delete: ended attempts' keys drop out at the
  # next apply, and the garbage collector deletes the Secret with its ReceiptSync. No get/list/watch:
  # the operator never reads a Secret (tenants' Gmail Secrets reach only their own worker, by
  # secretKeyRef). RBAC cannot narrow these verbs to names chosen at run time; the operator-secrets
  # admission policy limits them to Secrets labelled as worker credentials and owned by a ReceiptSync.
  - apiGroups: [""]
    resources: ["secrets"]
    verbs: ["create", "patch"]
  {{- end }}
  # Kubernetes Events on every phase transition (kubectl describe rsync): the operator and kopf
  # post core/v1 Events (patch: a repeated event is counted on the existing one); list: a worker
  # Job's FailedCreate (e.g. a quota refusal) is only told in an Event.
  - apiGroups: [""]
    resources: ["events"]
    verbs: ["create", "patch", "list"]
{{- end }}
