{{/*
A resource name from the release name and a suffix, valid as a DNS-1035 label (what Services need:
lowercase letters, digits and '-', starting with a letter, at most 63 characters) and distinct for
every (release, suffix) pair. Used as is when the plain "release-suffix" is such a label; otherwise
(a release name starting with a digit or holding dots, or too long) the release part is cleaned and
truncated, the suffix kept, and a hash of the plain name added, so that names never collide:
  demo + perspective-correction-validation -> demo-perspective-correction-validation
  1pc  + perspective-correction-validation -> p-1pc-perspective-correction-validation-<hash>
*/}}
{{- define "pipeteer.name63" -}}
{{- $release := index . 0 -}}{{- $suffix := index . 1 -}}
{{- $plain := printf "%s-%s" $release $suffix -}}
{{- if contains $release $suffix -}}{{- $plain = $suffix -}}{{- end -}}
{{- if and (le (len $plain) 63) (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $plain) -}}
{{- $plain -}}
{{- else -}}
{{- $hash := sha256sum $plain | trunc 8 -}}
{{- $head := regexReplaceAll "[^-a-z0-9]" $release "-" -}}
{{- if not (regexMatch "^[a-z]" $head) -}}{{- $head = printf "p-%s" $head -}}{{- end -}}
{{- $clean := regexReplaceAll "[^-a-z0-9]" $suffix "-" -}}
{{- $tail := printf "%s-%s" $clean $hash -}}
{{- $room := sub 62 (len $tail) | int -}}
{{- if lt $room 3 -}}{{/* a very long suffix: its start, then the hash */}}
{{- if not (regexMatch "^[a-z]" $clean) -}}{{- $clean = printf "p-%s" $clean -}}{{- end -}}
{{- printf "%s-%s" (regexReplaceAll "-+$" ($clean | trunc 54) "") $hash -}}
{{- else -}}
{{- $head = regexReplaceAll "-+$" ($head | trunc $room) "" -}}
{{- printf "%s-%s" $head $tail -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of a stage's resources: release name + the stage's compiled k8s name (see pipeteer.name63). */}}
{{- define "pipeteer.stageName" -}}
{{- $root := index . 0 -}}{{- $stage := index . 1 -}}
{{- include "pipeteer.name63" (list $root.Release.Name $stage.name) -}}
{{- end -}}

{{/* The headless Service through which the instances of a human stage find each other. */}}
{{- define "pipeteer.peersName" -}}
{{- $root := index . 0 -}}{{- $stage := index . 1 -}}
{{- include "pipeteer.name63" (list $root.Release.Name (printf "%s-peers" $stage.name)) -}}
{{- end -}}

{{- define "pipeteer.fullname" -}}
{{- include "pipeteer.name63" (list .Release.Name (.Values.workflow | default .Chart.Name)) -}}
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
