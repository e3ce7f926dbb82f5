{{/* Names and labels (the Helm conventions: app.kubernetes.io/*). */}}
{{- define "sm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sm.fullname" -}}
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

{{- define "sm.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "sm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: stream-monitor
{{- end -}}

{{/* Selector labels of one component: worker or notifier. */}}
{{- define "sm.selector" -}}
app.kubernetes.io/name: {{ include "sm.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "sm.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sm.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "sm.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Where secrets and TLS files are mounted. */}}
{{- define "sm.secretsDir" -}}/etc/stream-monitor/secrets{{- end -}}

{{/* "true" when Kafka is reached with SASL; with TLS; with TLS files from a Secret. */}}
{{- define "sm.kafkaSasl" -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}true{{ end -}}
{{- end -}}

{{- define "sm.kafkaTlsOn" -}}
{{- if has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL") }}true{{ end -}}
{{- end -}}

{{- define "sm.kafkaTls" -}}
{{- if and (eq (include "sm.kafkaTlsOn" .) "true") .Values.kafka.tls.secretName }}true{{ end -}}
{{- end -}}

{{/* Kafka settings and secret files, for the worker and the notifier (KAFKA_*). */}}
{{- define "sm.kafkaEnv" -}}
{{- if not (has .Values.kafka.securityProtocol (list "PLAINTEXT" "SSL" "SASL_PLAINTEXT" "SASL_SSL")) }}
{{- fail (printf "kafka.securityProtocol %q: use PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL" .Values.kafka.securityProtocol) }}
{{- end }}
- name: KAFKA_BOOTSTRAP_SERVERS
  value: {{ .Values.kafka.bootstrapServers | quote }}
- name: KAFKA_SECURITY_PROTOCOL
  value: {{ .Values.kafka.securityProtocol | quote }}
{{- if eq (include "sm.kafkaTlsOn" .) "true" }}
- name: KAFKA_SSL_CHECK_HOSTNAME
  value: {{ .Values.kafka.tls.checkHostname | quote }}
{{- end }}
{{- if eq (include "sm.kafkaSasl" .) "true" }}
{{- if not (and .Values.kafka.sasl.username .Values.kafka.sasl.passwordSecret.name) }}
{{- fail (printf "kafka.securityProtocol %s needs kafka.sasl.username and kafka.sasl.passwordSecret.name (a Secret holding the password)" .Values.kafka.securityProtocol) }}
{{- end }}
- name: KAFKA_SASL_MECHANISM
  value: {{ .Values.kafka.sasl.mechanism | quote }}
- name: KAFKA_SASL_USERNAME
  value: {{ .Values.kafka.sasl.username | quote }}
{{- if .Values.kafka.sasl.passwordSecret.name }}
- name: KAFKA_SASL_PASSWORD_FILE
  value: {{ include "sm.secretsDir" . }}/kafka-sasl/{{ .Values.kafka.sasl.passwordSecret.key }}
{{- end }}
{{- end }}
{{- if eq (include "sm.kafkaTls" .) "true" }}
{{- with .Values.kafka.tls }}
- name: KAFKA_SSL_CA_LOCATION
  value: {{ include "sm.secretsDir" $ }}/kafka-tls/{{ .caKey }}
{{- if .certKey }}
- name: KAFKA_SSL_CERTIFICATE_LOCATION
  value: {{ include "sm.secretsDir" $ }}/kafka-tls/{{ .certKey }}
{{- end }}
{{- if .keyKey }}
- name: KAFKA_SSL_KEY_LOCATION
  value: {{ include "sm.secretsDir" $ }}/kafka-tls/{{ .keyKey }}
{{- end }}
{{- if .keyPasswordKey }}
- name: KAFKA_SSL_KEY_PASSWORD_FILE
  value: {{ include "sm.secretsDir" $ }}/kafka-tls/{{ .keyPasswordKey }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "sm.kafkaVolumeMounts" -}}
{{- if and (eq (include "sm.kafkaSasl" .) "true") .Values.kafka.sasl.passwordSecret.name }}
- name: kafka-sasl
  mountPath: {{ include "sm.secretsDir" . }}/kafka-sasl
  readOnly: true
{{- end }}
{{- if eq (include "sm.kafkaTls" .) "true" }}
- name: kafka-tls
  mountPath: {{ include "sm.secretsDir" . }}/kafka-tls
  readOnly: true
{{- end }}
{{- end -}}

{{- define "sm.kafkaVolumes" -}}
{{- if and (eq (include "sm.kafkaSasl" .) "true") .Values.kafka.sasl.passwordSecret.name }}
- name: kafka-sasl
  secret:
    secretName: {{ .Values.kafka.sasl.passwordSecret.name }}
    defaultMode: 0440
    items:
      - key: {{ .Values.kafka.sasl.passwordSecret.key }}
        path: {{ .Values.kafka.sasl.passwordSecret.key }}
{{- end }}
{{- if eq (include "sm.kafkaTls" .) "true" }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafka.tls.secretName }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{/* HTTP probes on the health server (stream_monitor/observability/http.py). */}}
{{- define "sm.probe" -}}
httpGet:
  path: {{ .path }}
  port: http-metrics
periodSeconds: {{ .probe.periodSeconds }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
{{- end -}}

{{- define "sm.plainEnv" -}}
{{- range $k, $v := . }}
- name: {{ $k }}
  value: {{ $v | toString | quote }}
{{- end }}
{{- end -}}

{{/* KAFKA_SASL_MECHANISM as KEDA's Kafka scaler names it. */}}
{{- define "sm.kedaSasl" -}}
{{- $m := get (dict "PLAIN" "plaintext" "SCRAM-SHA-256" "scram_sha256" "SCRAM-SHA-512" "scram_sha512") .Values.kafka.sasl.mechanism -}}
{{- if not $m }}{{ fail (printf "kafka.sasl.mechanism %q: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512" .Values.kafka.sasl.mechanism) }}{{ end -}}
{{- $m -}}
{{- end -}}
