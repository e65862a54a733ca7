{{/* Name of a stage's resources: release name + the stage's compiled k8s name, at most 63 characters. */}}
{{- define "pipeteer.stageName" -}}
{{- $root := index . 0 -}}{{- $stage := index . 1 -}}
{{- if contains $root.Release.Name $stage.name -}}
{{- $stage.name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" $root.Release.Name $stage.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "pipeteer.fullname" -}}
{{- printf "%s-%s" .Release.Name (.Values.workflow | default .Chart.Name) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every resource except the instance (stage resources add it with their selector labels). */}}
{{- define "pipeteer.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pipeteer
app.kubernetes.io/version: {{ include "pipeteer.tag" . | quote }}
{{- with .Values.workflow }}
pipeteer.io/workflow: {{ . }}
{{- end }}
{{- end -}}

{{- define "pipeteer.labels" -}}
{{ include "pipeteer.commonLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Selector labels of one stage (stable across upgrades). */}}
{{- define "pipeteer.selectorLabels" -}}
{{- $root := index . 0 -}}{{- $key := index . 1 -}}{{- $stage := index . 2 -}}
app.kubernetes.io/name: {{ $stage.name }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ ternary "web-stage" "stage" $stage.web }}
{{- end -}}

{{- define "pipeteer.tag" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion | toString -}}
{{- if eq $tag "latest" -}}
{{- fail "image.tag must not be 'latest': pin the version of the pipeteer image" -}}
{{- end -}}
{{- $tag -}}
{{- end -}}

{{- define "pipeteer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "pipeteer.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* Whether a stage gets a Service: web stages always, automatic ones when metrics are scraped through one. */}}
{{- define "pipeteer.hasService" -}}
{{- $root := index . 0 -}}{{- $stage := index . 1 -}}
{{- if or $stage.web $root.Values.serviceMonitor.enabled -}}true{{- end -}}
{{- end -}}

{{/* Upper bound of replicas: the partition count of the stage's input. */}}
{{- define "pipeteer.maxReplicas" -}}
{{- $root := index . 0 -}}{{- $stage := index . 1 -}}
{{- $cap := int ($stage.maxReplicas | default $root.Values.partitions) -}}
{{- min $cap (int $root.Values.autoscaling.maxReplicas) -}}
{{- end -}}
