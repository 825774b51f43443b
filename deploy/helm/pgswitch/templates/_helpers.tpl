{{/* Names and labels. */}}
{{- define "pgswitch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pgswitch.fullname" -}}
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

{{- define "pgswitch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pgswitch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The pods' labels and the Deployment's selector: pgswitch's own, or the
app's in sidecar mode (the pods are the app's). */}}
{{- define "pgswitch.podSelectorLabels" -}}
{{- if eq .Values.mode "sidecar" -}}
app.kubernetes.io/name: {{ .Values.sidecar.app.name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- else -}}
{{ include "pgswitch.selectorLabels" . }}
{{- end -}}
{{- end -}}

{{- define "pgswitch.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "pgswitch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "pgswitch.secretName" -}}
{{- if .Values.credentials.create -}}
{{- printf "%s-credentials" (include "pgswitch.fullname" .) -}}
{{- else -}}
{{- required "credentials.existingSecret is required when credentials.create is false" .Values.credentials.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "pgswitch.checkMode" -}}
{{- if not (has .Values.mode (list "standalone" "sidecar")) -}}
{{- fail (printf "mode must be standalone or sidecar, not %q" (toString .Values.mode)) -}}
{{- end -}}
{{- end -}}

{{/*
Seconds in a pgswitch duration ("30s", "500ms", "1m", "1m30s"; milliseconds
rounded up). Other forms humantime accepts are refused here: set
terminationGracePeriodSeconds yourself, or use these units.
*/}}
{{- define "pgswitch.seconds" -}}
{{- $s := toString . -}}
{{- if not (regexMatch "^([0-9]+(ms|s|m|h))+$" $s) -}}
{{- fail (printf "cannot read the duration %q: write it as e.g. 30s, 500ms, 2m or 1m30s" $s) -}}
{{- end -}}
{{- $total := 0 -}}
{{- range $part := regexFindAll "[0-9]+(ms|s|m|h)" $s -1 -}}
{{- $n := regexFind "^[0-9]+" $part | atoi -}}
{{- $unit := regexReplaceAll "^[0-9]+" $part "" -}}
{{- if eq $unit "ms" -}}{{- $total = add $total (div (add $n 999) 1000) -}}
{{- else if eq $unit "s" -}}{{- $total = add $total $n -}}
{{- else if eq $unit "m" -}}{{- $total = add $total (mul $n 60) -}}
{{- else -}}{{- $total = add $total (mul $n 3600) -}}
{{- end -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/* The preStop sleep of the pgswitch container, 0 for none. */}}
{{- define "pgswitch.preStopSeconds" -}}
{{- if eq .Values.mode "standalone" -}}
{{- int .Values.standalone.preStopSleepSeconds -}}
{{- else if not .Values.sidecar.native -}}
{{- int .Values.sidecar.preStopSleepSeconds -}}
{{- else -}}
0
{{- end -}}
{{- end -}}

{{/* The effective [pgswitch] table: mode-given keys, then .Values.config. */}}
{{- define "pgswitch.configDict" -}}
{{- $c := dict -}}
{{- if eq .Values.mode "standalone" -}}
{{- $_ := set $c "listen" (printf "0.0.0.0:%d" (int .Values.port)) -}}
{{- if .Values.standalone.peers.enabled -}}
{{- $_ := set $c "peers" (list (printf "%s-peers.%s.svc:%d" (include "pgswitch.fullname" .) .Release.Namespace (int .Values.port))) -}}
{{- end -}}
{{- if .Values.tls.enabled -}}
{{- $_ := set $c "tls_cert_file" "/etc/pgswitch-tls/tls.crt" -}}
{{- $_ := set $c "tls_key_file" "/etc/pgswitch-tls/tls.key" -}}
{{- $_ := set $c "client_tls" .Values.tls.clientTls -}}
{{- end -}}
{{- else -}}
{{- $_ := set $c "listen" (printf "127.0.0.1:%d" (int .Values.port)) -}}
{{- end -}}
{{- $_ := set $c "metrics_listen" (printf "0.0.0.0:%d" (int .Values.metricsPort)) -}}
{{- range $k, $v := .Values.config -}}
{{- if kindIs "invalid" $v -}}
{{- $_ := unset $c $k -}}
{{- else -}}
{{- $_ := set $c $k $v -}}
{{- end -}}
{{- end -}}
{{- toJson $c -}}
{{- end -}}

{{/* pgswitch.toml. */}}
{{- define "pgswitch.toml" -}}
# pgswitch.toml rendered by the Helm chart (mode: {{ .Values.mode }}). The
# server and its credentials come from the Secret, as PGSWITCH_PRIMARY and
# PGSWITCH_REPLICAS (environment beats this file).
[pgswitch]
{{- range $k, $v := (include "pgswitch.configDict" . | fromJson) }}
{{- if or (kindIs "map" $v) (kindIs "invalid" $v) }}
{{- fail (printf "config.%s: only strings, numbers, booleans and lists go into [pgswitch]" $k) }}
{{- end }}
{{ $k }} = {{ toJson $v }}
{{- end }}
{{- end -}}

{{/* terminationGracePeriodSeconds, checked against the drain it must cover. */}}
{{- define "pgswitch.graceSeconds" -}}
{{- $cfg := include "pgswitch.configDict" . | fromJson -}}
{{- $need := add (include "pgswitch.preStopSeconds" . | int) (include "pgswitch.seconds" (default "30s" $cfg.shutdown_timeout) | int) (include "pgswitch.seconds" (default "5s" $cfg.server_reset_timeout) | int) -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- add $need 10 -}}
{{- else -}}
{{- $set := int .Values.terminationGracePeriodSeconds -}}
{{- if le $set $need -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be above preStop sleep + shutdown_timeout + server_reset_timeout (%d), or the kubelet kills pgswitch mid-drain" $set $need) -}}
{{- end -}}
{{- $set -}}
{{- end -}}
{{- end -}}

{{/* Environment variables that give a container the credentials. */}}
{{- define "pgswitch.credentialEnv" -}}
- name: DB_USER
  valueFrom:
    secretKeyRef: {name: {{ include "pgswitch.secretName" . }}, key: username}
- name: DB_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ include "pgswitch.secretName" . }}, key: password}
- name: DB_NAME
  valueFrom:
    secretKeyRef: {name: {{ include "pgswitch.secretName" . }}, key: dbname}
{{- end -}}

{{/* The pgswitch container. */}}
{{- define "pgswitch.container" -}}
{{- $portName := ternary "postgres" "pgswitch" (eq .Values.mode "standalone") -}}
{{- $httpName := ternary "metrics" "pgswitch-http" (eq .Values.mode "standalone") -}}
{{- $preStop := include "pgswitch.preStopSeconds" . | int -}}
- name: pgswitch
  image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  {{- if and (eq .Values.mode "sidecar") .Values.sidecar.native }}
  # A native sidecar: starts before the app, stops after it.
  restartPolicy: Always
  {{- end }}
  args: ["--config", "/etc/pgswitch/pgswitch.toml"]
  env:
    {{- include "pgswitch.credentialEnv" . | nindent 4 }}
    - name: DB_HOST
      valueFrom:
        secretKeyRef: {name: {{ include "pgswitch.secretName" . }}, key: host}
    - name: DB_PORT
      valueFrom:
        secretKeyRef: {name: {{ include "pgswitch.secretName" . }}, key: port}
    # The server pgswitch pools for (credentials.urlOptions adds TLS options).
    - name: PGSWITCH_PRIMARY
      value: {{ printf "postgres://$(DB_USER):$(DB_PASSWORD)@$(DB_HOST):$(DB_PORT)/$(DB_NAME)%s" (ternary (printf "?%s" .Values.credentials.urlOptions) "" (ne .Values.credentials.urlOptions "")) | quote }}
    - name: PGSWITCH_REPLICAS
      valueFrom:
        secretKeyRef: {name: {{ include "pgswitch.secretName" . }}, key: replicas, optional: true}
    - name: PGSWITCH_LOG_FORMAT
      value: {{ .Values.logFormat | quote }}
    {{- with .Values.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    {{- if eq .Values.mode "standalone" }}
    - name: {{ $portName }}
      containerPort: {{ .Values.port }}
    {{- end }}
    - name: {{ $httpName }}
      containerPort: {{ .Values.metricsPort }}
  {{- if gt $preStop 0 }}
  lifecycle:
    preStop:
      {{- if eq .Values.mode "standalone" }}
      # The pod leaves the Service's endpoints before pgswitch closes its
      # listener (at once on SIGTERM).
      {{- else }}
      # pgswitch keeps its listener open while the app drains.
      {{- end }}
      exec:
        command: ["/bin/sleep", "{{ $preStop }}"]
  {{- end }}
  startupProbe:
    httpGet: {path: /healthz, port: {{ $httpName }}}
    periodSeconds: {{ .Values.probes.startup.periodSeconds }}
    failureThreshold: {{ .Values.probes.startup.failureThreshold }}
  readinessProbe:
    httpGet: {path: /readyz, port: {{ $httpName }}}
    periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
    timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
    failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
  livenessProbe:
    httpGet: {path: /healthz, port: {{ $httpName }}}
    periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
    timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
    failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
  resources:
    {{- toYaml .Values.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: pgswitch-config
      mountPath: /etc/pgswitch
      readOnly: true
    {{- if and (eq .Values.mode "standalone") .Values.tls.enabled }}
    - name: pgswitch-tls
      mountPath: /etc/pgswitch-tls
      readOnly: true
    {{- end }}
{{- end -}}
