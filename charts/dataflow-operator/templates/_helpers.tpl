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

{{/* Rules for the namespaced resources the operator works on: exactly the verbs it uses
(tests/test_ha.py checks every request the operator makes against these rules). */}}
{{- define "dataflow-operator.namespacedRules" -}}
- apiGroups: [dataflow.dev]
  resources: [dataflowschemas]
  verbs: [get, list, watch, patch]
- apiGroups: [dataflow.dev]
  resources: [dataflowschemas/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [create, patch]  # kube.write_config_map: merge-patch, else create
{{- end }}
