{{/* Names and labels (Kubernetes recommended labels). */}}
{{- define "mammo-node.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mammo-node.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains (include "mammo-node.name" .) .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "mammo-node.name" .) | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mammo-node.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mammo-node.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "mammo-node.labels" -}}
{{ include "mammo-node.selectorLabels" . }}
app.kubernetes.io/part-of: mammo-node
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "mammo-node.image" -}}
{{ printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end -}}

{{/* The node's job store: no password in the URL (libpq reads PGPASSWORD). */}}
{{- define "mammo-node.databaseUrl" -}}
{{- $pg := .Values.postgresql -}}
{{ printf "postgresql+psycopg://%s@%s:%d/%s?sslmode=%s" $pg.username $pg.host (int $pg.port) $pg.jobsDatabase $pg.sslmode }}
{{- end -}}

{{- define "mammo-node.orthancUrl" -}}
{{ printf "http://%s-orthanc:%d" (include "mammo-node.fullname" .) (int .Values.orthanc.httpService.port) }}
{{- end -}}

{{/* Env shared by Orthanc and the node: the credentials, from Secrets only. */}}
{{- define "mammo-node.secretEnv" -}}
- name: MAMMO_NODE_HTTP_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ .Values.existingSecret }}, key: orthanc-password}
- name: MAMMO_NODE_API_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ .Values.existingSecret }}, key: api-token}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef: {name: {{ .Values.postgresql.existingSecret }}, key: {{ .Values.postgresql.passwordKey }}}
{{- end -}}

{{/*
Destinations as MAMMO_NODE_DESTINATIONS (YAML). A password is a block scalar holding
$(MAMMO_NODE_DESTINATION_<n>_PASSWORD), which Kubernetes expands from the env var defined
before it (a secretKeyRef): the password is never in values, the manifest or the ConfigMap.
*/}}
{{- define "mammo-node.destinationsEnv" -}}
{{- range $index, $destination := .Values.destinations }}
{{- if $destination.passwordSecret }}
- name: MAMMO_NODE_DESTINATION_{{ $index }}_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $destination.passwordSecret.name }}, key: {{ $destination.passwordSecret.key }}}
{{- end }}
{{- end }}
{{- if .Values.destinations }}
- name: MAMMO_NODE_DESTINATIONS
  value: |
{{- range $index, $destination := .Values.destinations }}
    -
{{ omit $destination "passwordSecret" | toYaml | indent 6 }}
{{- if $destination.passwordSecret }}
      password: |-
        $(MAMMO_NODE_DESTINATION_{{ $index }}_PASSWORD)
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Pod and container security: non-root, read-only root filesystem, no capabilities. */}}
{{- define "mammo-node.podCommon" -}}
serviceAccountName: {{ include "mammo-node.fullname" . }}
automountServiceAccountToken: false
securityContext:
{{ toYaml .Values.podSecurityContext | indent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{ toYaml . | indent 2 }}
{{- end }}
{{- end -}}

{{/* A node pod (`mammo-node serve`): role "api" (no inference workers) or "workers". */}}
{{- define "mammo-node.nodePod" -}}
{{- $root := .root -}}
{{- $values := index $root.Values .role -}}
metadata:
  labels:
{{ include "mammo-node.labels" (dict "root" $root "component" .role) | indent 4 }}
  annotations:
    checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
spec:
{{ include "mammo-node.podCommon" $root | indent 2 }}
  containers:
    - name: node
      image: {{ include "mammo-node.image" $root }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      args: [serve]
      env:
        - name: MAMMO_NODE_CONFIG
          value: /etc/mammo-node/config.yaml
        - name: MAMMO_NODE_WORKERS
          value: {{ ternary "0" (toString $root.Values.workers.threadsPerPod) (eq .role "api") | quote }}
{{- if and (eq .role "workers") $root.Values.workers.gpu.enabled }}
        {{- /* a GPU pod that starts without a GPU torch can see fails at start-up, loudly,
             rather than scoring on its CPU */}}
        - name: MAMMO_NODE_DEVICE
          value: cuda
{{- end }}
{{ include "mammo-node.secretEnv" $root | indent 8 }}
{{- include "mammo-node.destinationsEnv" $root | indent 8 }}
      ports:
        - {name: http, containerPort: 8000, protocol: TCP}
      readinessProbe:
        httpGet: {path: /healthz, port: http}
        periodSeconds: 10
        failureThreshold: 3
      livenessProbe:
        tcpSocket: {port: http}
        initialDelaySeconds: 30
        periodSeconds: 20
      startupProbe:
        tcpSocket: {port: http}
        periodSeconds: 5
        failureThreshold: 60
      resources:
{{- $resources := deepCopy $values.resources }}
{{- if and (eq .role "workers") $root.Values.workers.gpu.enabled }}
{{- $_ := set $resources "limits" (merge (dict $root.Values.workers.gpu.resourceName $root.Values.workers.gpu.count) (default dict $resources.limits)) }}
{{- end }}
{{ toYaml $resources | indent 8 }}
      securityContext:
{{ toYaml $root.Values.securityContext | indent 8 }}
      volumeMounts:
        - {name: config, mountPath: /etc/mammo-node, readOnly: true}
        - {name: data, mountPath: /var/lib/mammo-node}
        - {name: tmp, mountPath: /tmp}
  volumes:
    - name: config
      configMap:
        name: {{ include "mammo-node.fullname" $root }}-config
        items: [{key: config.yaml, path: config.yaml}]
    - name: data
{{- if $root.Values.persistence.enabled }}
      persistentVolumeClaim:
        claimName: {{ default (printf "%s-data" (include "mammo-node.fullname" $root)) $root.Values.persistence.existingClaim }}
{{- else }}
      emptyDir: {}
{{- end }}
    - name: tmp
      emptyDir: {}
{{- with $values.nodeSelector }}
  nodeSelector:
{{ toYaml . | indent 4 }}
{{- end }}
{{- with $values.tolerations }}
  tolerations:
{{ toYaml . | indent 4 }}
{{- end }}
{{- end -}}
