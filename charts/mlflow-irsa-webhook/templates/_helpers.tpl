{{/* Names, labels and the shared pieces of the webhook and its hook Jobs. */}}

{{- define "mlflow-irsa-webhook.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Object name prefix; kept to 52 characters so suffixes like -bootstrap-cert-create stay within 63. */}}
{{- define "mlflow-irsa-webhook.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "mlflow-irsa-webhook.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mlflow-irsa-webhook.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
The webhook pods' selector (Deployment, Service, PodDisruptionBudget, anti-affinity). The component label keeps the
hook Jobs' pods, which carry the same name and instance labels, out of every one of them.
*/}}
{{- define "mlflow-irsa-webhook.webhookSelectorLabels" -}}
{{ include "mlflow-irsa-webhook.selectorLabels" . }}
app.kubernetes.io/component: webhook
{{- end -}}

{{- define "mlflow-irsa-webhook.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "mlflow-irsa-webhook.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "mlflow-irsa-webhook.tlsSecret" -}}
{{- default (printf "%s-tls" (include "mlflow-irsa-webhook.fullname" .)) .Values.tls.secretName -}}
{{- end -}}

{{/* The image reference; there is no public image, so the repository must be given. The tag defaults to appVersion. */}}
{{- define "mlflow-irsa-webhook.image" -}}
{{- $repository := required "image.repository is required: set it to the repository you pushed this project's image to, e.g. --set image.repository=111122223333.dkr.ecr.us-west-2.amazonaws.com/mlflow-irsa-webhook (the README says how to build and push it)" .Values.image.repository -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
The environment variable that carries the config file's text in the hook Jobs and the helm test Pod (they run with
--config-env): in their own spec, which a tenant who may edit ConfigMaps in their namespace cannot change between
rendering and the start (a ConfigMap could be).
*/}}
{{- define "mlflow-irsa-webhook.configEnvName" -}}
MLFLOW_IRSA_WEBHOOK_CONFIG
{{- end -}}

{{- define "mlflow-irsa-webhook.configEnv" -}}
- name: {{ include "mlflow-irsa-webhook.configEnvName" . }}
  value: {{ include "mlflow-irsa-webhook.config" . | quote }}
{{- end -}}

{{- define "mlflow-irsa-webhook.triggerNamespace" -}}
{{- default .Values.namespace .Values.jobs.trigger.namespace -}}
{{- end -}}

{{/*
The webhook's config file: exactly the config keys (listed in _config-keys.tpl, generated from the program's schema)
that are set in the values, so the file validates against the same schema as values.schema.json.
*/}}
{{- define "mlflow-irsa-webhook.config" -}}
{{- $config := dict -}}
{{- range $key := splitList " " (include "mlflow-irsa-webhook.configKeys" .) -}}
{{- if and (hasKey $.Values $key) (not (kindIs "invalid" (get $.Values $key))) -}}
{{- $_ := set $config $key (get $.Values $key) -}}
{{- end -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/* Fails rendering with a clear message for combinations values.schema.json cannot express. */}}
{{- define "mlflow-irsa-webhook.checks" -}}
{{- if le (int .Values.terminationGracePeriodSeconds) (int (ceil .Values.server.drainSeconds)) -}}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed server.drainSeconds (%v): a pod must finish draining before it is killed" .Values.terminationGracePeriodSeconds .Values.server.drainSeconds) -}}
{{- end -}}
{{- if and .Values.podDisruptionBudget.enabled (ge (int .Values.podDisruptionBudget.minAvailable) (int .Values.replicas)) -}}
{{- fail (printf "podDisruptionBudget.minAvailable (%v) must be below replicas (%v): a budget that allows no eviction blocks kubectl drain and node group upgrades; raise replicas or set podDisruptionBudget.enabled=false" .Values.podDisruptionBudget.minAvailable .Values.replicas) -}}
{{- end -}}
{{- if ge (int .Values.jobs.bootstrapCert.renewDays) (int .Values.jobs.bootstrapCert.days) -}}
{{- fail (printf "jobs.bootstrapCert.renewDays (%v) must be below jobs.bootstrapCert.days (%v), or every upgrade would renew" .Values.jobs.bootstrapCert.renewDays .Values.jobs.bootstrapCert.days) -}}
{{- end -}}
{{- $metricsPort := int (.Values.server.metricsPort | default 0) -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not $metricsPort) -}}
{{- fail "metrics.serviceMonitor.enabled needs server.metricsPort (e.g. 9090): the ServiceMonitor scrapes that plain-HTTP port" -}}
{{- end -}}
{{- if and $metricsPort (eq $metricsPort (int .Values.server.port)) -}}
{{- fail (printf "server.metricsPort (%v) must differ from server.port: the metrics listener is a second port (0 turns it off)" $metricsPort) -}}
{{- end -}}
{{- $jobs := .Values.jobs -}}
{{- if and $jobs.trigger.enabled (ge (int $jobs.trigger.waitSeconds) (int $jobs.activeDeadlineSeconds)) -}}
{{- fail (printf "jobs.trigger.waitSeconds (%v) must be below jobs.activeDeadlineSeconds (%v), so the Job gives up with its own message (kubectl logs) before it is killed" $jobs.trigger.waitSeconds $jobs.activeDeadlineSeconds) -}}
{{- end -}}
{{- if and $jobs.restart.enabled (ge (int $jobs.restart.waitSeconds) (int $jobs.activeDeadlineSeconds)) -}}
{{- fail (printf "jobs.restart.waitSeconds (%v) must be below jobs.activeDeadlineSeconds (%v), so the Job gives up with its own message (kubectl logs) before it is killed" $jobs.restart.waitSeconds $jobs.activeDeadlineSeconds) -}}
{{- end -}}
{{- $dbTls := .Values.database.tls -}}
{{- if and $dbTls.caSecret.name $dbTls.caConfigMap.name -}}
{{- fail (printf "database.tls.caSecret.name (%q) and database.tls.caConfigMap.name (%q) are both set: give the database's CA certificate one way" $dbTls.caSecret.name $dbTls.caConfigMap.name) -}}
{{- end -}}
{{- if and (or $dbTls.caSecret.name $dbTls.caConfigMap.name) (eq .Values.database.sslMode "disable") -}}
{{- fail "database.tls gives a CA certificate but database.sslMode is disable, which never uses it: use verify-full (or verify-ca), or remove the CA" -}}
{{- end -}}
{{- $doctorDb := .Values.tests.database -}}
{{- if ne (empty $doctorDb.user) (empty $doctorDb.passwordSecret.name) -}}
{{- fail (printf "tests.database.user (%q) and tests.database.passwordSecret.name (%q) go together: doctor's read-only login needs both, or neither for database.user's" $doctorDb.user $doctorDb.passwordSecret.name) -}}
{{- end -}}
{{- if .Values.hostNetwork -}}
{{- $ports := dict "server.port" (int .Values.server.port) -}}
{{- if $metricsPort }}{{ $_ := set $ports "server.metricsPort" $metricsPort }}{{ end -}}
{{- range $key, $port := $ports -}}
{{- if has $port (list 10248 10249 10250 10255 10256 10257 10259) -}}
{{- fail (printf "%s %d is a kubelet or kube-proxy port on every node; with hostNetwork pick a free one, e.g. 10260 (cert-manager's choice)" $key $port) -}}
{{- end -}}
{{- if lt $port 1024 -}}
{{- fail (printf "%s %d is below 1024, which the webhook (non-root, no capabilities) cannot bind in the node's network; pick e.g. 10260" $key $port) -}}
{{- end -}}
{{- end -}}
{{- if .Values.networkPolicy.enabled -}}
{{- fail "networkPolicy.enabled has no effect on hostNetwork pods (NetworkPolicy selects pod-network pods only): set networkPolicy.enabled=false and allow the API server to server.port in the node security group" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.networkPolicy.enabled (not .Values.networkPolicy.apiServer) -}}
{{- fail "networkPolicy.apiServer is empty: the NetworkPolicy would keep the API server from the webhook; list its peers (on EKS, ipBlocks of the VPC's CIDR or the control-plane subnets)" -}}
{{- end -}}
{{- $trigger := .Values.trigger | default dict -}}
{{- if and (hasKey $trigger "enforceLocations") (not (kindIs "invalid" $trigger.enforceLocations)) $trigger.locationPolicy -}}
{{- $means := ternary "enforce" "off" (eq (toString $trigger.enforceLocations) "true") -}}
{{- if ne $means (toString $trigger.locationPolicy) -}}
{{- fail (printf "trigger.enforceLocations: %v is deprecated and means locationPolicy %s, which disagrees with trigger.locationPolicy: %q; remove trigger.enforceLocations (helm upgrade --reuse-values keeps it from the earlier chart's defaults: add --set trigger.enforceLocations=null)" $trigger.enforceLocations $means $trigger.locationPolicy) -}}
{{- end -}}
{{- end -}}
{{- $self := include "mlflow-irsa-webhook.fullname" . -}}
{{- if and (eq .Release.Namespace .Values.namespace) (or (eq $self .Values.deployment) (eq $self .Values.serviceAccount)) -}}
{{- fail (printf "the release's objects are named %q in namespace %q, the same as the mlflow Deployment/ServiceAccount the webhook mutates; use another release name or namespace" $self .Release.Namespace) -}}
{{- end -}}
{{- end -}}

{{/* Pod and container security settings shared by the webhook and every hook Job. */}}
{{- define "mlflow-irsa-webhook.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "mlflow-irsa-webhook.containerSecurityContext" -}}
runAsNonRoot: true
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
Common spec of the hook Jobs; call with (dict "root" $ "name" ... "args" (list ...) ...), and optionally "env" (list of
env entries), "serviceAccount" (true: the Job's own, named like the Job; see hooks/rbac.yaml), "namespace", and
"mounts": a list of (dict "name" "mountPath" "volume"), each mounted read-only, where "volume" is the volume source
(e.g. (dict "secret" (dict "secretName" ...))). `--config-env` is appended to the args, and the config's text is the
first entry of the Job's env.
*/}}
{{- define "mlflow-irsa-webhook.hookJob" -}}
{{- $root := .root -}}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ printf "%s-%s" (include "mlflow-irsa-webhook.fullname" $root) .name }}
  namespace: {{ default $root.Release.Namespace .namespace }}
  labels:
    {{- include "mlflow-irsa-webhook.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .name }}
  annotations:
    helm.sh/hook: {{ .hook }}
    helm.sh/hook-weight: {{ .weight | quote }}
    helm.sh/hook-delete-policy: before-hook-creation
spec:
  backoffLimit: {{ $root.Values.jobs.backoffLimit }}
  ttlSecondsAfterFinished: {{ $root.Values.jobs.ttlSecondsAfterFinished }}
  activeDeadlineSeconds: {{ $root.Values.jobs.activeDeadlineSeconds }}
  template:
    metadata:
      labels:
        {{- include "mlflow-irsa-webhook.labels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ .name }}
        {{- /* values quoted: `--set jobs.podLabels.x=true` gives a boolean, which the API refuses in a label or annotation */}}
        {{- range $key, $value := $root.Values.jobs.podLabels }}
        {{ $key }}: {{ $value | toString | quote }}
        {{- end }}
      {{- with $root.Values.jobs.podAnnotations }}
      annotations:
        {{- range $key, $value := . }}
        {{ $key }}: {{ $value | toString | quote }}
        {{- end }}
      {{- end }}
    spec:
      restartPolicy: Never
      {{- if .serviceAccount }}
      serviceAccountName: {{ printf "%s-%s" (include "mlflow-irsa-webhook.fullname" $root) .name }}
      automountServiceAccountToken: true
      {{- else }}
      automountServiceAccountToken: false
      {{- end }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- include "mlflow-irsa-webhook.podSecurityContext" $root | nindent 8 }}
      containers:
        - name: {{ .name }}
          image: {{ include "mlflow-irsa-webhook.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args:
            {{- toYaml (concat .args (list "--config-env" (include "mlflow-irsa-webhook.configEnvName" $root))) | nindent 12 }}
          env:
            {{- include "mlflow-irsa-webhook.configEnv" $root | nindent 12 }}
            {{- with .env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          securityContext:
            {{- include "mlflow-irsa-webhook.containerSecurityContext" $root | nindent 12 }}
          resources:
            {{- toYaml $root.Values.jobs.resources | nindent 12 }}
          {{- with .mounts }}
          volumeMounts:
            {{- range . }}
            - name: {{ .name }}
              mountPath: {{ .mountPath }}
              readOnly: true
            {{- end }}
          {{- end }}
      {{- with .mounts }}
      volumes:
        {{- range . }}
        - name: {{ .name }}
          {{- toYaml .volume | nindent 10 }}
        {{- end }}
      {{- end }}
{{- end -}}

{{/*
Hook annotations of one hook Job's identity (call with the Job's hook events): created before the Job in the phases it
runs in, and removed when the phase ends. hook-succeeded: when the phase succeeds, and (Helm 3.18 and later,
helm/helm#30673) also when a later hook of the phase, such as the Job, fails; Helm before 3.18 leaves the identity of a
failed phase until the next run of that phase replaces it (before-hook-creation) and removes it.
*/}}
{{- define "mlflow-irsa-webhook.hookRbacAnnotations" -}}
helm.sh/hook: {{ . }}
helm.sh/hook-weight: "-10"
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end -}}

{{/*
"true" when the reconcile loop runs in `serve`. A reconcile.enabled removed from the values (set to null) leaves the
key out of the config file, where the program's default (on) applies, so the chart must agree.
*/}}
{{- define "mlflow-irsa-webhook.reconcileEnabled" -}}
{{- $r := .Values.reconcile | default dict -}}
{{- if or (not (hasKey $r "enabled")) $r.enabled -}}true{{- end -}}
{{- end -}}

{{/* The libpq environment of everything that reads the tracking database: the trigger Jobs and the doctor test. */}}
{{- define "mlflow-irsa-webhook.pgEnv" -}}
{{- include "mlflow-irsa-webhook.pgEnvAs" (dict "root" . "user" .Values.database.user "passwordSecret" .Values.database.passwordSecret) -}}
{{- end -}}

{{/* The same, logged in as another role: (dict "root" $ "user" USER "passwordSecret" (dict "name" … "key" …)). */}}
{{- define "mlflow-irsa-webhook.pgEnvAs" -}}
{{- $db := .root.Values.database -}}
- name: PGHOST
  value: {{ $db.host | quote }}
- name: PGPORT
  value: {{ $db.port | toString | quote }}
- name: PGDATABASE
  value: {{ $db.name | quote }}
- name: PGUSER
  value: {{ .user | quote }}
- name: PGSSLMODE
  value: {{ $db.sslMode | quote }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .passwordSecret.name | quote }}
      key: {{ .passwordSecret.key | quote }}
{{- if or $db.tls.caSecret.name $db.tls.caConfigMap.name }}
- name: PGSSLROOTCERT
  value: {{ printf "%s/ca.crt" (include "mlflow-irsa-webhook.dbCaDir" .root) | quote }}
{{- end }}
{{- end -}}

{{/* Where the database's CA certificate is mounted in the pods that connect to the database. */}}
{{- define "mlflow-irsa-webhook.dbCaDir" -}}
/etc/mlflow-irsa-webhook-db-ca
{{- end -}}

{{/* The database's CA certificate, from a Secret or a ConfigMap, as a list of read-only mounts in the shape the hookJob
helper takes (dict "name" "mountPath" "volume"); empty without database.tls. PGSSLROOTCERT (pgEnv) names the file. */}}
{{- define "mlflow-irsa-webhook.dbCaMounts" -}}
{{- $db := .Values.database -}}
{{- $dir := include "mlflow-irsa-webhook.dbCaDir" . -}}
{{- $mounts := list -}}
{{- with $db.tls.caSecret.name }}
{{- $mounts = list (dict "name" "db-ca" "mountPath" $dir "volume" (dict "secret" (dict "secretName" . "items" (list (dict "key" $db.tls.caSecret.key "path" "ca.crt"))))) -}}
{{- end }}
{{- with $db.tls.caConfigMap.name }}
{{- $mounts = list (dict "name" "db-ca" "mountPath" $dir "volume" (dict "configMap" (dict "name" . "items" (list (dict "key" $db.tls.caConfigMap.key "path" "ca.crt"))))) -}}
{{- end }}
{{- toYaml $mounts -}}
{{- end -}}

{{/* Where the `helm test` doctor runs: beside the database Secret when the trigger checks can run; else in the release
namespace, where `helm test --logs` finds its Pod. */}}
{{- define "mlflow-irsa-webhook.doctorNamespace" -}}
{{- ternary (include "mlflow-irsa-webhook.triggerNamespace" .) .Release.Namespace .Values.jobs.trigger.enabled -}}
{{- end -}}

{{/* Hook annotations of the `helm test` Pod's identity: made before the Pod, removed once the test passes. */}}
{{- define "mlflow-irsa-webhook.testRbacAnnotations" -}}
helm.sh/hook: test
helm.sh/hook-weight: "-10"
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end -}}
