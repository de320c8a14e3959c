{{/* Chart name, cut to the 63 characters a label value allows. */}}
{{- define "brokercast.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name for every object of the chart. */}}
{{- define "brokercast.fullname" -}}
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

{{- define "brokercast.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "brokercast.labels" -}}
helm.sh/chart: {{ include "brokercast.chart" . }}
{{ include "brokercast.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The labels selectors use; they never change between chart versions. */}}
{{- define "brokercast.selectorLabels" -}}
app.kubernetes.io/name: {{ include "brokercast.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of the helm test pod, which the release's selectors must miss. */}}
{{- define "brokercast.testLabels" -}}
helm.sh/chart: {{ include "brokercast.chart" . }}
app.kubernetes.io/name: {{ include "brokercast.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: test
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "brokercast.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "brokercast.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "brokercast.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The settings file: config plus the keys the chart owns. host and port follow
containerPort so that probes, Service and server agree; id comes from the
pod name through BROKERCAST_ID instead.
*/}}
{{- define "brokercast.settings" -}}
{{- $settings := deepCopy .Values.config }}
{{- $_ := set $settings "host" "0.0.0.0" }}
{{- $_ = set $settings "port" .Values.containerPort }}
{{- toYaml $settings }}
{{- end }}

{{/* BROKERCAST_<KEY> for a dotted setting such as sources.orders.url. */}}
{{- define "brokercast.settingEnvName" -}}
{{- printf "BROKERCAST_%s" (. | replace "." "__" | upper) }}
{{- end }}

{{/*
Reject values that render but would not work: a grace period too short for
a clean shutdown, a consumer group shared by several replicas, a Redis source
without a URL, or a ServiceMonitor without metrics.
*/}}
{{- define "brokercast.validate" -}}
{{- $shutdown := 10 }}
{{- if hasKey .Values.config "shutdown_timeout" }}
{{- $shutdown = .Values.config.shutdown_timeout | float64 | ceil | int }}
{{- end }}
{{- $needed := add $shutdown .Values.preStopSleepSeconds }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int $needed) }}
{{- fail (printf "terminationGracePeriodSeconds=%v must be greater than config.shutdown_timeout (%v) + preStopSleepSeconds (%v), or the kubelet kills brokercast before it has closed its clients" .Values.terminationGracePeriodSeconds $shutdown .Values.preStopSleepSeconds) }}
{{- end }}
{{- $replicated := or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) }}
{{- if $replicated }}
{{- range $name, $source := .Values.config.sources | default dict }}
{{- if or (hasKey $source "group") (hasKey $source "group_id") }}
{{- fail (printf "config.sources.%s sets a consumer group, but with several replicas the group splits the events between pods, so each client misses the events of the other pods; remove the group or run one replica" $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- $fromSecrets := list }}
{{- range .Values.secretSettings }}
{{- $fromSecrets = append $fromSecrets .setting }}
{{- end }}
{{- range $name, $source := .Values.config.sources | default dict }}
{{- $url := printf "sources.%s.url" $name }}
{{- if and (eq (toString $source.type) "redis") (not (hasKey $source "url")) (not (has $url $fromSecrets)) }}
{{- fail (printf "config.sources.%s has no url: set it in config, or add a secretSettings entry with setting %s" $name $url) }}
{{- end }}
{{- end }}
{{- $metrics := or (not (hasKey .Values.config "enable_metric")) .Values.config.enable_metric }}
{{- if and .Values.metrics.serviceMonitor.enabled (not $metrics) }}
{{- fail "metrics.serviceMonitor.enabled needs config.enable_metric to be true" }}
{{- end }}
{{- end }}
