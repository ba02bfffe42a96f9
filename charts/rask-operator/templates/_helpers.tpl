{{/* Names and labels shared by every template. */}}

{{- define "rask-operator.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rask-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "rask-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rask-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "rask-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "rask-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rask
{{- end -}}

{{- define "rask-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "rask-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "rask-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Namespaces whose DaskCluster pods the PodMonitor selects. */}}
{{- define "rask-operator.podMonitorNamespaces" -}}
{{- if .Values.podMonitor.namespaces -}}
matchNames:
{{- toYaml .Values.podMonitor.namespaces | nindent 2 }}
{{- else if .Values.watchNamespace -}}
matchNames:
  - {{ .Values.watchNamespace }}
{{- else -}}
any: true
{{- end -}}
{{- end -}}

{{/* Fails rendering on a combination that cannot work. */}}
{{- define "rask-operator.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) -}}
{{- fail "replicas > 1 needs leaderElection.enabled=true: two operators without a Lease would both write" -}}
{{- end -}}
{{- end -}}
