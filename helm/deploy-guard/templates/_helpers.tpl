{{/*
Expand the name of the chart.
*/}}
{{- define "deploy-guard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "deploy-guard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "deploy-guard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "deploy-guard.labels" -}}
helm.sh/chart: {{ include "deploy-guard.chart" . }}
{{ include "deploy-guard.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels
*/}}
{{- define "deploy-guard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "deploy-guard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Create the name of the service account to use
*/}}
{{/*
The name of the Kubernetes service account the pods run as.
*/}}
{{- define "deploy-guard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "deploy-guard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The container image: repository@digest, else repository:tag (tag defaults to appVersion).
*/}}
{{- define "deploy-guard.image" -}}
{{- $repo := required "image.repository is required: the registry path of the guard's image (built from the repository's Dockerfile)" .Values.image.repository }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
Where things live in the pod.
*/}}
{{- define "deploy-guard.configDir" -}}/etc/deploy-guard{{- end }}
{{- define "deploy-guard.dataDir" -}}/var/lib/deploy-guard{{- end }}

{{/*
The Secret key reference holding the PostgreSQL URL (name defaults to existingSecret).
*/}}
{{- define "deploy-guard.postgresUrlSecretName" -}}
{{- .Values.store.postgresql.urlSecret.name | default .Values.existingSecret }}
{{- end }}

{{/*
Checks that no schema can express; each fails the render with a message saying what to do.
*/}}
{{- define "deploy-guard.validate" -}}
{{- if not .Values.config.apps }}
{{- fail "config.apps is empty: the guard needs at least one app to protect (see config/example.yaml)" }}
{{- end }}
{{- if and (eq .Values.store.type "sqlite") (gt (int .Values.replicaCount) 1) }}
{{- fail (printf "replicaCount is %d but store.type is sqlite: SQLite allows exactly one guard per database file. Use store.type=postgresql for several replicas with leader election." (int .Values.replicaCount)) }}
{{- end }}
{{- if and (eq .Values.store.type "postgresql") (not (include "deploy-guard.postgresUrlSecretName" .)) }}
{{- fail "store.type is postgresql but no Secret holds its URL: set store.postgresql.urlSecret.name (or existingSecret) to a Secret whose key store.postgresql.urlSecret.key is the postgresql+psycopg:// URL" }}
{{- end }}
{{- $grace := .Values.config.shutdown_grace_seconds | default 20 }}
{{- if le (float64 .Values.terminationGracePeriodSeconds) (float64 $grace) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed config.shutdown_grace_seconds (%v): the kubelet would SIGKILL the guard while it finishes an action" .Values.terminationGracePeriodSeconds $grace) }}
{{- end }}
{{- end }}

{{/*
The guard's configuration file: .Values.config plus what the chart decides (API address,
SQLite path, rules directory).
*/}}
{{- define "deploy-guard.config" -}}
{{- $cfg := deepCopy .Values.config }}
{{- $api := deepCopy ($cfg.api | default dict) }}
{{- $_ := set $api "host" "0.0.0.0" }}
{{- $_ := set $api "port" 8080 }}
{{- $_ := set $cfg "api" $api }}
{{- if eq .Values.store.type "sqlite" }}
{{- $_ := set $cfg "store" (dict "url" (printf "sqlite:///%s/guard.db" (include "deploy-guard.dataDir" .))) }}
{{- end }}
{{- if .Values.rules }}
{{- $_ := set $cfg "rules_dir" (printf "%s/rules" (include "deploy-guard.configDir" .)) }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}
