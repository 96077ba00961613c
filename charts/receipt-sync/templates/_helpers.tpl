{{/*
Naming, labels and the small computed values every template shares.
*/}}

{{- define "receipt-sync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "receipt-sync.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "receipt-sync.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object the chart renders. */}}
{{- define "receipt-sync.labels" -}}
helm.sh/chart: {{ include "receipt-sync.chart" . }}
app.kubernetes.io/name: {{ include "receipt-sync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: receiptsync
{{- end -}}

{{/* Selector labels of the operator pods (immutable once installed: keep them small). */}}
{{- define "receipt-sync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "receipt-sync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* Labels the operator puts on every worker Job/Pod (receiptsync_common.contract). */}}
{{- define "receipt-sync.workerSelectorLabels" -}}
app.kubernetes.io/managed-by: receiptsync-operator
app.kubernetes.io/component: worker
{{- end -}}

{{- define "receipt-sync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "receipt-sync.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository:tag, or repository@digest when a digest is given. Arg: dict "image" .. "root" $ */}}
{{- define "receipt-sync.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
The namespace the operator watches: "" means every namespace (cluster scope only). In namespace
scope it defaults to the release namespace.
*/}}
{{- define "receipt-sync.watchNamespace" -}}
{{- if eq .Values.rbac.scope "namespace" -}}
{{- default .Release.Namespace .Values.watchNamespace -}}
{{- else -}}
{{- .Values.watchNamespace -}}
{{- end -}}
{{- end -}}

{{- define "receipt-sync.leaseName" -}}
{{- default (include "receipt-sync.fullname" .) .Values.leaderElection.leaseName -}}
{{- end -}}

{{- define "receipt-sync.redisName" -}}
{{- printf "%s-redis" (include "receipt-sync.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "receipt-sync.postgresqlName" -}}
{{- printf "%s-postgresql" (include "receipt-sync.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
An env var's value: bundled service, else the plain value, else a secretKeyRef to an existing Secret.
Workers may run in other namespaces, so bundled services are addressed by their cluster DNS name.
*/}}
{{- define "receipt-sync.redisUrlValueFrom" -}}
{{- if .Values.redis.bundled.enabled -}}
value: {{ printf "redis://%s.%s.svc:6379/0" (include "receipt-sync.redisName" .) .Release.Namespace | quote }}
{{- else if .Values.redis.url -}}
value: {{ .Values.redis.url | quote }}
{{- else if .Values.redis.existingSecret -}}
valueFrom:
  secretKeyRef:
    name: {{ .Values.redis.existingSecret }}
    key: {{ .Values.redis.existingSecretKey }}
{{- else -}}
{{- fail "Redis is not configured: set redis.existingSecret (recommended), redis.url, or redis.bundled.enabled=true" -}}
{{- end -}}
{{- end -}}

{{- define "receipt-sync.databaseUrlValueFrom" -}}
{{- if .Values.database.bundled.enabled -}}
valueFrom:
  secretKeyRef:
    name: {{ include "receipt-sync.postgresqlName" . }}
    key: database-url
{{- else if .Values.database.url -}}
value: {{ .Values.database.url | quote }}
{{- else if .Values.database.existingSecret -}}
valueFrom:
  secretKeyRef:
    name: {{ .Values.database.existingSecret }}
    key: {{ .Values.database.existingSecretKey }}
{{- else -}}
{{- fail "PostgreSQL is not configured: set database.existingSecret (recommended), database.url, or database.bundled.enabled=true" -}}
{{- end -}}
{{- end -}}

{{/*
The worker pod template overlay the operator merges into every worker Job's pod template
(env RECEIPTSYNC_WORKER_TEMPLATE_JSON). The operator sets the image, env and labels itself.
*/}}
{{- define "receipt-sync.workerTemplate" -}}
{{- $w := .Values.worker -}}
{{- $container := dict "name" "worker" "imagePullPolicy" $w.image.pullPolicy "securityContext" $w.securityContext "resources" $w.resources "volumeMounts" (list (dict "name" "tmp" "mountPath" "/tmp")) -}}
{{- if $w.extraEnv -}}
{{- $_ := set $container "env" $w.extraEnv -}}
{{- end -}}
{{- $spec := dict "automountServiceAccountToken" false "enableServiceLinks" false "securityContext" $w.podSecurityContext "containers" (list $container) "volumes" (list (dict "name" "tmp" "emptyDir" (dict "sizeLimit" $w.tmpSizeLimit))) -}}
{{- with $w.nodeSelector }}{{- $_ := set $spec "nodeSelector" . -}}{{- end -}}
{{- with $w.tolerations }}{{- $_ := set $spec "tolerations" . -}}{{- end -}}
{{- with $w.affinity }}{{- $_ := set $spec "affinity" . -}}{{- end -}}
{{- with $w.priorityClassName }}{{- $_ := set $spec "priorityClassName" . -}}{{- end -}}
{{- with $w.imagePullSecrets }}{{- $_ := set $spec "imagePullSecrets" . -}}{{- end -}}
{{- $template := dict "spec" $spec -}}
{{- $meta := dict -}}
{{- with $w.podLabels }}{{- $_ := set $meta "labels" . -}}{{- end -}}
{{- with $w.podAnnotations }}{{- $_ := set $meta "annotations" . -}}{{- end -}}
{{- if $meta }}{{- $_ := set $template "metadata" $meta -}}{{- end -}}
{{- $template | toJson -}}
{{- end -}}
