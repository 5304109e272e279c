{{/* The DiffKeeper image. */}}
{{- define "diffkeeper.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end }}

{{/* Labels of the app's pods. */}}
{{- define "diffkeeper.labels" -}}
app.kubernetes.io/name: {{ .Values.app.name }}
app.kubernetes.io/part-of: diffkeeper
{{- end }}

{{/* diffkeeper-init as the app pods run it. */}}
{{- define "diffkeeper.initContainer" -}}
- name: diffkeeper-init
  image: {{ include "diffkeeper.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command: ["/usr/local/bin/diffkeeper-init"]
  args:
    - --btf-cache-dir=/var/cache/diffkeeper/btf
    - --host-root=/host
    {{- with .Values.init.bakedBtfDir }}
    - --baked-btf-dir={{ . }}
    {{- end }}
    {{- with .Values.init.mirror.url }}
    - --btfhub-mirror={{ . }}
    {{- end }}
    {{- if .Values.init.mirror.caCert }}
    - --ca-file=/etc/diffkeeper/mirror-ca/ca.crt
    {{- end }}
    {{- if .Values.init.disableDownload }}
    - --disable-btfhub-download
    {{- end }}
    {{- if .Values.stateRecorder.enabled }}
    - --restore-from=/var/lib/diffkeeper/store
    - --restore-to={{ .Values.app.stateMountPath }}
    {{- end }}
  securityContext:
    runAsUser: 65532
    runAsGroup: 65532
    runAsNonRoot: true
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: ["ALL"]
  resources:
    {{- toYaml .Values.init.resources | nindent 4 }}
  volumeMounts:
    - name: btf-cache
      mountPath: /var/cache/diffkeeper/btf
      {{- if .Values.nodeCache.enabled }}
      readOnly: true
      {{- end }}
    - name: host-os-release
      mountPath: /host/etc/os-release
      readOnly: true
    {{- if .Values.init.mirror.caCert }}
    - name: mirror-ca
      mountPath: /etc/diffkeeper/mirror-ca
      readOnly: true
    {{- end }}
    {{- if .Values.stateRecorder.enabled }}
    - name: state
      mountPath: {{ .Values.app.stateMountPath }}
    - name: diffkeeper-store
      mountPath: /var/lib/diffkeeper/store
      readOnly: true
    {{- end }}
{{- end }}

{{/* diffkeeper-sidecar; native: an init container with restartPolicy Always (Kubernetes >= 1.29). */}}
{{- define "diffkeeper.sidecarContainer" -}}
- name: diffkeeper-sidecar
  image: {{ include "diffkeeper.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  {{- if .Values.sidecar.native }}
  restartPolicy: Always
  {{- end }}
  command: ["/usr/local/bin/diffkeeper-sidecar"]
  args:
    {{- range .Values.sidecar.stateDirs }}
    - --state-dir={{ . }}
    {{- end }}
    - --btf-cache-dir=/var/cache/diffkeeper/btf
    - --metrics-addr=0.0.0.0:{{ .Values.sidecar.metricsPort }}
    {{- if .Values.sidecar.kretprobeTracefs }}
    - --tracefs-dir=/host/sys/kernel/tracing
    {{- end }}
    {{- if .Values.stateRecorder.enabled }}
    - --store=/var/lib/diffkeeper/store
    - --store-max-bytes={{ int64 .Values.stateRecorder.storeMaxBytes }}
    {{- end }}
  ports:
    - name: metrics
      containerPort: {{ .Values.sidecar.metricsPort }}
      protocol: TCP
  startupProbe:
    httpGet:
      path: /healthz
      port: metrics
    periodSeconds: 1
    failureThreshold: 60
  readinessProbe:
    httpGet:
      path: /healthz
      port: metrics
    periodSeconds: 10
  livenessProbe:
    httpGet:
      path: /healthz
      port: metrics
    periodSeconds: 20
    failureThreshold: 3
  securityContext:
    runAsUser: 0
    runAsNonRoot: false
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: ["ALL"]
      {{- if .Values.stateRecorder.enabled }}
      add: {{ toJson (concat .Values.sidecar.capabilities (list "DAC_READ_SEARCH")) }}
      {{- else }}
      add: {{ toJson .Values.sidecar.capabilities }}
      {{- end }}
  resources:
    {{- if .Values.stateRecorder.enabled }}
    {{- $limits := merge (dict "memory" .Values.stateRecorder.sidecarMemoryLimit) .Values.sidecar.resources.limits }}
    {{- toYaml (dict "requests" .Values.sidecar.resources.requests "limits" $limits) | nindent 4 }}
    {{- else }}
    {{- toYaml .Values.sidecar.resources | nindent 4 }}
    {{- end }}
  volumeMounts:
    - name: state
      mountPath: {{ .Values.app.stateMountPath }}
      readOnly: true
    - name: btf-cache
      mountPath: /var/cache/diffkeeper/btf
      readOnly: true
    - name: sidecar-tmp
      mountPath: /tmp
    {{- if .Values.sidecar.kretprobeTracefs }}
    - name: host-tracefs
      mountPath: /host/sys/kernel/tracing
      readOnly: false
    {{- end }}
    {{- if .Values.stateRecorder.enabled }}
    - name: diffkeeper-store
      mountPath: /var/lib/diffkeeper/store
    {{- end }}
{{- end }}

{{/* The application container. */}}
{{- define "diffkeeper.appContainer" -}}
- name: app
  image: {{ .Values.app.image }}
  imagePullPolicy: IfNotPresent
  command: {{ toJson .Values.app.command }}
  securityContext:
    runAsUser: {{ .Values.app.runAsUser }}
    runAsGroup: {{ .Values.app.runAsUser }}
    runAsNonRoot: true
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: ["ALL"]
  resources:
    {{- toYaml .Values.app.resources | nindent 4 }}
  volumeMounts:
    - name: state
      mountPath: {{ .Values.app.stateMountPath }}
{{- end }}
