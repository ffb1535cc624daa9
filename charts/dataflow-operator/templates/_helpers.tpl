{{/* Full name of the release's objects. */}}
{{- define "dataflow-operator.fullname" -}}
{{ .Release.Name }}-{{ .Chart.Name }}
{{- end }}

{{/* Common labels. */}}
{{- define "dataflow-operator.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{/* Selector labels (immutable once deployed). */}}
{{- define "dataflow-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "dataflow-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.name -}}
{{ .Values.serviceAccount.name }}
{{- else -}}
{{ include "dataflow-operator.fullname" . }}
{{- end -}}
{{- end }}

{{/* Rules for the namespaced resources the operator works on. */}}
{{- define "dataflow-operator.namespacedRules" -}}
- apiGroups: [dataflow.dev]
  resources: [dataflowschemas]
  verbs: [get, list, watch, patch, update]
- apiGroups: [dataflow.dev]
  resources: [dataflowschemas/status]
  verbs: [get, patch, update]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, create, update, patch]
{{- end }}
