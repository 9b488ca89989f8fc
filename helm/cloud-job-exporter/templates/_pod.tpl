{{/* The pod template of the Deployment and of the sharded StatefulSet. */}}
{{- define "cje.podTemplate" -}}
{{- $secret := include "cje.secretName" . -}}
metadata:
  labels:
    {{- include "cje.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include "cje.config" . | sha256sum }}
    {{- if and $secret (not .Values.credentials.existingSecret) (not .Values.demo.enabled) }}
    checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "cje.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  containers:
    - name: exporter
      image: {{ include "cje.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        {{- if .Values.demo.enabled }}
        - --demo
        {{- else }}
        - --config.file=/etc/cloud-job-exporter/config/config.yaml
        {{- end }}
        - --web.listen-address=:{{ .Values.port }}
        - --log.format={{ .Values.log.format }}
        - --log.level={{ .Values.log.level }}
        {{- if .Values.sharding.enabled }}
        - --pod=$(CJE_POD_NAME)
        - --total-shards={{ .Values.sharding.replicas }}
        {{- end }}
        {{- range .Values.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      ports:
        - name: http-metrics
          containerPort: {{ .Values.port }}
          protocol: TCP
      {{- if and $secret (eq .Values.credentials.mode "env") (not .Values.demo.enabled) }}
      envFrom:
        - secretRef:
            name: {{ $secret }}
      {{- end }}
      {{- if or .Values.sharding.enabled .Values.extraEnv }}
      env:
        {{- if .Values.sharding.enabled }}
        # The StatefulSet pod's name (<name>-<ordinal>): the exporter takes its shard from the ordinal.
        - name: CJE_POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
      livenessProbe:
        {{- toYaml .Values.livenessProbe | nindent 8 }}
      readinessProbe:
        {{- toYaml .Values.readinessProbe | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- if not .Values.demo.enabled }}
        - name: config
          mountPath: /etc/cloud-job-exporter/config
          readOnly: true
        {{- if and $secret (eq .Values.credentials.mode "file") }}
        - name: credentials
          mountPath: {{ include "cje.credentialsDir" . }}
          readOnly: true
        {{- end }}
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
    {{- if not .Values.demo.enabled }}
    - name: config
      configMap:
        name: {{ include "cje.fullname" . }}
    {{- if and $secret (eq .Values.credentials.mode "file") }}
    - name: credentials
      secret:
        secretName: {{ $secret }}
        defaultMode: 0440
    {{- end }}
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
