{{/* The chart name, overridable. */}}
{{- define "wasmxds.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name of the release's objects. */}}
{{- define "wasmxds.fullname" -}}
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

{{/* Labels on every object. */}}
{{- define "wasmxds.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "wasmxds.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the pods. */}}
{{- define "wasmxds.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wasmxds.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "wasmxds.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "wasmxds.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The ConfigMap holding the spec files. */}}
{{- define "wasmxds.specsConfigMap" -}}
{{- if and .Values.existingSpecsConfigMap .Values.specs }}
{{- fail "set either specs or existingSpecsConfigMap, not both" }}
{{- end }}
{{- default (printf "%s-specs" (include "wasmxds.fullname" .)) .Values.existingSpecsConfigMap }}
{{- end }}

{{/* The Service's DNS name, as Envoys anywhere in the cluster reach it. */}}
{{- define "wasmxds.serviceHost" -}}
{{- printf "%s.%s.svc.%s" (include "wasmxds.fullname" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{/* The headless Service: every pod's address, for peers. */}}
{{- define "wasmxds.headlessName" -}}
{{- printf "%s-headless" (include "wasmxds.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{/* --advertise-url: the Service's module port unless set. */}}
{{- define "wasmxds.advertiseURL" -}}
{{- if .Values.advertiseURL }}
{{- .Values.advertiseURL }}
{{- else }}
{{- printf "%s://%s:%d" (ternary "https" "http" .Values.tls.enabled) (include "wasmxds.serviceHost" .) (int .Values.service.httpPort) }}
{{- end }}
{{- end }}

{{- define "wasmxds.tlsSecret" -}}
{{- if not .Values.tls.secretName }}
{{- fail "tls.enabled needs tls.secretName: a Secret with tls.crt, tls.key and ca.crt" }}
{{- end }}
{{- .Values.tls.secretName }}
{{- end }}

{{/* The `wasmxds serve` arguments. */}}
{{- define "wasmxds.args" -}}
- serve
- --config-dir=/etc/wasmxds/specs
- --cache-dir=/var/cache/wasmxds
- --xds-listen=:18000
- --http-listen=:18080
- --admin-listen=0.0.0.0:{{ .Values.admin.port }}
- --advertise-url={{ include "wasmxds.advertiseURL" . }}
- --log-format={{ .Values.logFormat }}
- --resync={{ .Values.resync }}
{{- if .Values.peers.enabled }}
- --peer=dns:{{ include "wasmxds.headlessName" . }}.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}:{{ .Values.admin.port }}
{{- end }}
{{- if .Values.tls.enabled }}
- --tls-cert-file=/etc/wasmxds/tls/tls.crt
- --tls-key-file=/etc/wasmxds/tls/tls.key
{{- if .Values.tls.verifyClients }}
- --client-ca-file=/etc/wasmxds/tls/ca.crt
{{- end }}
{{- end }}
{{- range .Values.insecureRegistries }}
- --insecure-registry={{ . }}
{{- end }}
{{- if .Values.registryCredentials.existingSecret }}
- --docker-config=/etc/wasmxds/docker/config.json
{{- end }}
{{- with .Values.extraArgs }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The pod template, shared by the Deployment and the StatefulSet. */}}
{{- define "wasmxds.podTemplate" -}}
metadata:
  labels:
    {{- include "wasmxds.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "wasmxds.serviceAccountName" . }}
  # wasmxds never calls the Kubernetes API.
  automountServiceAccountToken: false
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  securityContext:
    # The distroless nonroot user of the image.
    runAsNonRoot: true
    runAsUser: 65532
    runAsGroup: 65532
    fsGroup: 65532
    seccompProfile:
      type: RuntimeDefault
  affinity:
    {{- if .Values.affinity }}
    {{- toYaml .Values.affinity | nindent 4 }}
    {{- else }}
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            topologyKey: kubernetes.io/hostname
            labelSelector:
              matchLabels:
                {{- include "wasmxds.selectorLabels" . | nindent 16 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: wasmxds
      image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        {{- include "wasmxds.args" . | nindent 8 }}
      ports:
        - name: xds
          containerPort: 18000
          protocol: TCP
        - name: http
          containerPort: 18080
          protocol: TCP
        - name: admin
          containerPort: {{ .Values.admin.port }}
          protocol: TCP
      readinessProbe:
        httpGet:
          path: /readyz
          port: admin
        periodSeconds: {{ .Values.readinessProbe.periodSeconds }}
        failureThreshold: {{ .Values.readinessProbe.failureThreshold }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: admin
        periodSeconds: {{ .Values.livenessProbe.periodSeconds }}
        failureThreshold: {{ .Values.livenessProbe.failureThreshold }}
      securityContext:
        runAsNonRoot: true
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities:
          drop: [ALL]
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - name: specs
          mountPath: /etc/wasmxds/specs
          readOnly: true
        - name: cache
          mountPath: /var/cache/wasmxds
        - name: tmp
          mountPath: /tmp
        {{- if .Values.tls.enabled }}
        - name: tls
          mountPath: /etc/wasmxds/tls
          readOnly: true
        {{- end }}
        {{- if .Values.registryCredentials.existingSecret }}
        - name: docker-config
          mountPath: /etc/wasmxds/docker
          readOnly: true
        {{- end }}
  volumes:
    - name: specs
      configMap:
        name: {{ include "wasmxds.specsConfigMap" . }}
    {{- if not .Values.cache.persistence.enabled }}
    - name: cache
      emptyDir:
        {{- with .Values.cache.emptyDir.sizeLimit }}
        sizeLimit: {{ . }}
        {{- end }}
    {{- end }}
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
    {{- if .Values.tls.enabled }}
    - name: tls
      secret:
        secretName: {{ include "wasmxds.tlsSecret" . }}
        defaultMode: 0440
        items:
          - {key: tls.crt, path: tls.crt}
          - {key: tls.key, path: tls.key}
          {{- if .Values.tls.verifyClients }}
          - {key: ca.crt, path: ca.crt}
          {{- end }}
    {{- end }}
    {{- with .Values.registryCredentials.existingSecret }}
    - name: docker-config
      secret:
        secretName: {{ . }}
        defaultMode: 0440
        items:
          - {key: .dockerconfigjson, path: config.json}
    {{- end }}
{{- end }}
