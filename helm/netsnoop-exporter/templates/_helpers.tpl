{{/* Chart name, overridable. */}}
{{- define "netsnoop-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified name: release name, plus the chart name unless the release has it. */}}
{{- define "netsnoop-exporter.fullname" -}}
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

{{- define "netsnoop-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable across upgrades (a DaemonSet's selector is immutable). */}}
{{- define "netsnoop-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "netsnoop-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "netsnoop-exporter.labels" -}}
helm.sh/chart: {{ include "netsnoop-exporter.chart" . }}
{{ include "netsnoop-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: metrics
app.kubernetes.io/part-of: {{ include "netsnoop-exporter.name" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "netsnoop-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "netsnoop-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "netsnoop-exporter.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Namespace of a monitoring object: its own setting, else the release's. */}}
{{- define "netsnoop-exporter.monitorNamespace" -}}
{{- default .root.Release.Namespace .namespace }}
{{- end }}

{{/* Where the exporter reads its config inside the pod. */}}
{{- define "netsnoop-exporter.configDir" -}}/etc/netsnoop{{- end }}

{{/* The host's cgroup tree, mounted beside the pod's own (namespaced) /sys/fs/cgroup. */}}
{{- define "netsnoop-exporter.hostCgroupDir" -}}/host/sys/fs/cgroup{{- end }}

{{/* The exporter's config: the values' config, with the host cgroup mount filled in when
the pod labels are on. */}}
{{- define "netsnoop-exporter.config" -}}
{{- $config := deepCopy .Values.config }}
{{- $kubernetes := default dict $config.kubernetes }}
{{- if and $kubernetes.enabled (not (hasKey $kubernetes "cgroup_root")) }}
{{- $_ := set $kubernetes "cgroup_root" (include "netsnoop-exporter.hostCgroupDir" .) }}
{{- $_ := set $config "kubernetes" $kubernetes }}
{{- end }}
{{- toYaml $config }}
{{- end }}
