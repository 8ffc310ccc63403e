{{/*
Expand the name of the chart.
*/}}
{{- define "tmpfs-secrets.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "tmpfs-secrets.fullname" -}}
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
{{- define "tmpfs-secrets.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "tmpfs-secrets.labels" -}}
helm.sh/chart: {{ include "tmpfs-secrets.chart" . }}
{{ include "tmpfs-secrets.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
Selector labels
*/}}
{{- define "tmpfs-secrets.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tmpfs-secrets.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Create the name of the service account to use
*/}}
{{- define "tmpfs-secrets.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tmpfs-secrets.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
RBAC rules on cluster-scoped objects: always in the ClusterRole.
*/}}
{{- define "tmpfs-secrets.clusterRules" -}}
# Watch ClusterSecretStores; patch them for kopf's last-handled-configuration annotation.
- apiGroups: [tmpfs-secrets.io]
  resources: [clustersecretstores]
  verbs: [get, list, watch, patch]
# Their Ready condition.
- apiGroups: [tmpfs-secrets.io]
  resources: [clustersecretstores/status]
  verbs: [patch]
# ClusterSecretStore namespace conditions match namespace labels.
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get, list, watch]
# Direct delivery: verify each agent's token.
- apiGroups: [authentication.k8s.io]
  resources: [tokenreviews]
  verbs: [create]
# kopf discovers the CRDs it serves and notices when they appear or go.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- end }}

{{/*
RBAC rules on namespaced objects: in the ClusterRole, or in a Role per watched namespace.
*/}}
{{- define "tmpfs-secrets.namespacedRules" -}}
# Watch ExternalSecrets (only their status is written).
- apiGroups: [tmpfs-secrets.io]
  resources: [externalsecrets]
  verbs: [get, list, watch]
# Watch SecretStores; patch them for kopf's last-handled-configuration annotation.
- apiGroups: [tmpfs-secrets.io]
  resources: [secretstores]
  verbs: [get, list, watch, patch]
# Ready conditions, versions and content hashes.
- apiGroups: [tmpfs-secrets.io]
  resources: [externalsecrets/status, secretstores/status]
  verbs: [patch]
# Target Secrets: create, and patch only when their content changed; list and watch the ones
# labelled tmpfs-secrets.io/target (the selector is applied by the API server), so writes and
# restarts need no reads. Static AWS keys of a store (auth.secretRef) are read with get.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, patch]
# Synced, Rotated and SyncFailed events on ExternalSecrets.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# Per-tenant IRSA (auth.serviceAccountRef): read the role annotation, request a token.
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [get]
- apiGroups: [""]
  resources: [serviceaccounts/token]
  verbs: [create]
# rotation.restartWorkloads: find the workloads whose pod template asks for an ExternalSecret,
# and restart them by patching a pod-template annotation (as kubectl rollout restart does).
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets]
  verbs: [list, patch]
# Direct delivery: read the annotation of an agent's pod.
- apiGroups: [""]
  resources: [pods]
  verbs: [get]
{{- end }}

{{/*
RBAC rules for leader election: a Role in the release's namespace.
*/}}
{{- define "tmpfs-secrets.leaderElectionRules" -}}
# The leader Lease: read and renew it (create can't be limited to a name).
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  resourceNames: [{{ include "tmpfs-secrets.fullname" . }}-leader]
  verbs: [get, update]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [create]
{{- if .Values.direct.enabled }}
# Direct delivery: the leader labels its own pod (tmpfs-secrets.io/leader), which the Direct
# Service selects, and clears the label when it stops leading.
- apiGroups: [""]
  resources: [pods]
  verbs: [patch]
{{- end }}
{{- end }}

{{/*
The webhook's Service name, and the Secret the operator reads its serving certificate from: your
own (webhook.certificate.secretName), cert-manager's (certManager.enabled) or the chart's.
*/}}
{{- define "tmpfs-secrets.webhookService" -}}
{{- printf "%s-webhook" (include "tmpfs-secrets.fullname" .) }}
{{- end }}

{{- define "tmpfs-secrets.webhookSecretName" -}}
{{- if .Values.certManager.enabled }}
{{- printf "%s-webhook-cert-manager-tls" (include "tmpfs-secrets.fullname" .) }}
{{- else }}
{{- .Values.webhook.certificate.secretName | default (printf "%s-webhook-tls" (include "tmpfs-secrets.fullname" .)) }}
{{- end }}
{{- end }}

{{/*
The cert-manager Certificate of the webhook's serving certificate; the webhook configurations
name it in cert-manager.io/inject-ca-from.
*/}}
{{- define "tmpfs-secrets.webhookCertificate" -}}
{{- printf "%s-webhook" (include "tmpfs-secrets.fullname" .) }}
{{- end }}

{{/*
The webhook configurations' CA: cert-manager's cainjector fills caBundle from the Certificate's
Secret, or the chart sets it (the caller passes the base64 PEM).
*/}}
{{- define "tmpfs-secrets.webhookCAAnnotations" -}}
{{- if .Values.certManager.enabled -}}
annotations:
  cert-manager.io/inject-ca-from: {{ printf "%s/%s" .Release.Namespace (include "tmpfs-secrets.webhookCertificate" .) }}
{{- end }}
{{- end }}
