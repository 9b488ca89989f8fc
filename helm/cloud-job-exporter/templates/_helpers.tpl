{{/* Names and labels. */}}
{{- define "cje.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cje.fullname" -}}
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

{{- define "cje.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cje.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cje.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "cje.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cloud-job-exporter
{{- end -}}

{{- define "cje.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cje.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Service's name: the release's full name, or <fullname>-headless for the sharded StatefulSet. */}}
{{- define "cje.serviceName" -}}
{{- if .Values.sharding.enabled -}}
{{- printf "%s-headless" (include "cje.fullname" . | trunc 54 | trimSuffix "-") -}}
{{- else -}}
{{- include "cje.fullname" . -}}
{{- end -}}
{{- end -}}

{{- define "cje.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The Secret holding the credentials, or "" when there is none. */}}
{{- define "cje.secretName" -}}
{{- if eq .Values.credentials.mode "none" -}}
{{- else if .Values.credentials.existingSecret -}}
{{- .Values.credentials.existingSecret -}}
{{- else -}}
{{- include "cje.fullname" . -}}
{{- end -}}
{{- end -}}

{{- define "cje.credentialsDir" -}}/etc/cloud-job-exporter/credentials{{- end -}}

{{/* The *_file credentials of a source of kind .kind, as YAML. */}}
{{- define "cje.credentialFiles" -}}
{{- $dir := include "cje.credentialsDir" .root -}}
{{- $creds := .root.Values.credentials -}}
{{- if eq .kind "dataarts_factory" -}}
access_key_id_file: {{ $dir }}/HUAWEICLOUD_SDK_AK
access_key_secret_file: {{ $dir }}/HUAWEICLOUD_SDK_SK
{{- if or (and $creds.existingSecret $creds.existingSecretHasSecurityToken) (and (not $creds.existingSecret) $creds.huaweiCloud.securityToken) }}
security_token_file: {{ $dir }}/HUAWEICLOUD_SDK_SECURITY_TOKEN
{{- end }}
{{- else -}}
access_key_id_file: {{ $dir }}/ALIBABA_CLOUD_ACCESS_KEY_ID
access_key_secret_file: {{ $dir }}/ALIBABA_CLOUD_ACCESS_KEY_SECRET
{{- if or (and $creds.existingSecret $creds.existingSecretHasSecurityToken) (and (not $creds.existingSecret) $creds.alibabaCloud.securityToken) }}
security_token_file: {{ $dir }}/ALIBABA_CLOUD_SECURITY_TOKEN
{{- end }}
{{- end -}}
{{- end -}}

{{/* The exporter's configuration file: .Values.config with the chart's credential files filled in. */}}
{{- define "cje.config" -}}
{{- $root := . -}}
{{- $sources := list -}}
{{- range $index, $source := .Values.config.sources -}}
{{- $s := deepCopy $source -}}
{{- if and (eq $root.Values.credentials.mode "file") (not (hasKey $s "credentials")) -}}
{{- $_ := set $s "credentials" (include "cje.credentialFiles" (dict "kind" $s.kind "root" $root) | fromYaml) -}}
{{- end -}}
{{- $sources = append $sources $s -}}
{{- end -}}
{{- toYaml (merge (dict "sources" $sources) (omit .Values.config "sources")) -}}
{{- end -}}

{{/* Fails on values that cannot work together. */}}
{{- define "cje.validate" -}}
{{- if and .Values.demo.enabled .Values.config.sources -}}
{{- fail "demo.enabled=true runs the built-in simulator and ignores config.sources: set demo.enabled=false to poll your sources" -}}
{{- end -}}
{{- if and (not .Values.demo.enabled) (not .Values.config.sources) -}}
{{- fail "config.sources is empty: list at least one source (see values.yaml), or set demo.enabled=true" -}}
{{- end -}}
{{- if .Values.sharding.enabled -}}
{{- if gt (int .Values.replicaCount) 1 -}}
{{- fail "sharding.enabled=true: set the number of shards with sharding.replicas; replicaCount is for full copies of an unsharded exporter" -}}
{{- end -}}
{{- if ne .Values.service.type "ClusterIP" -}}
{{- fail (printf "sharding.enabled=true makes the Service headless, which needs service.type=ClusterIP (got %s)" .Values.service.type) -}}
{{- end -}}
{{- if gt (len (include "cje.fullname" .)) 52 -}}
{{- fail (printf "sharding.enabled=true: the StatefulSet name %s is longer than 52 characters, too long for its pods' controller-revision-hash label; set fullnameOverride" (include "cje.fullname" .)) -}}
{{- end -}}
{{- if .Values.demo.enabled -}}
{{- fail "sharding.enabled=true shards config.sources: the demo (demo.enabled=true) runs one exporter against a simulator of its own; set demo.enabled=false and list your sources" -}}
{{- end -}}
{{- end -}}
{{- $c := .Values.credentials -}}
{{- if not (has $c.mode (list "file" "env" "none")) -}}
{{- fail "credentials.mode: expected file, env or none" -}}
{{- end -}}
{{- if and (not .Values.demo.enabled) (ne $c.mode "none") (not $c.existingSecret) -}}
{{- range .Values.config.sources -}}
{{- if not (hasKey . "credentials") -}}
{{- if eq .kind "dataarts_factory" -}}
{{- if not (and $c.huaweiCloud.accessKey $c.huaweiCloud.secretKey) -}}
{{- fail (printf "source %s: set credentials.huaweiCloud.accessKey and secretKey, or credentials.existingSecret" .name) -}}
{{- end -}}
{{- else if not (and $c.alibabaCloud.accessKeyId $c.alibabaCloud.accessKeySecret) -}}
{{- fail (printf "source %s: set credentials.alibabaCloud.accessKeyId and accessKeySecret, or credentials.existingSecret" .name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
