{{/*
Names and labels.
*/}}
{{- define "llmsight.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name prefix of every resource: <release>-llmsight, or the release name when it already
contains the chart name. Truncated to 63 characters (the DNS label limit).
*/}}
{{- define "llmsight.fullname" -}}
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

{{- define "llmsight.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels. Call with (dict "root" $ "component" "collector").
*/}}
{{- define "llmsight.labels" -}}
helm.sh/chart: {{ include "llmsight.chart" .root }}
{{ include "llmsight.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: llmsight
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "llmsight.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llmsight.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{- define "llmsight.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llmsight.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "llmsight.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
A secret given either as a plain value or as a secretKeyRef; renders nothing when neither is set.
Call with (dict "name" "ENV_NAME" "key" "values.path" "value" .Values.x.password [ "secret" name ]).
A plain value never becomes an env literal: it lives in a Secret the chart owns (secret.yaml, key
ENV_NAME), and the variable reads it from there. That Secret is "secret", or the one
"llmsight.stampSecrets" noted on the value (templates that call this without a root context).
validations.yaml rejects value and secretKeyRef at once; the fail here guards direct use.
*/}}
{{- define "llmsight.secretEnv" -}}
{{- $ref := .value.secretKeyRef | default dict -}}
{{- if and $ref.name .value.value -}}
{{- fail (printf "%s is given both as value and as secretKeyRef: use one of them" .key) -}}
{{- end -}}
{{- if $ref.name }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.name | quote }}
      key: {{ required (printf "%s.secretKeyRef.name is set but %s.secretKeyRef.key is empty: name the key in the Secret" .key .key) $ref.key | quote }}
{{- else if .value.value }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ required (printf "%s: no chart Secret known for this value (pass \"secret\")" .key) (.secret | default .value.chartSecret) | quote }}
      key: {{ .secretKey | default .name | quote }}
{{- end }}
{{- end }}

{{/*
The chart's own Secret, holding the secrets given as plain values (keys: the variable names).
*/}}
{{- define "llmsight.secretName" -}}
{{- printf "%s-secrets" (include "llmsight.fullname" .) }}
{{- end }}

{{/*
The plain secret values, as KEY: value (the data of the chart's Secret); empty when there are none.
*/}}
{{- define "llmsight.plainSecrets" -}}
{{- $v := .Values -}}
{{- $all := dict "CLICKHOUSE_PASSWORD" $v.clickhouse.password.value
    "DASHBOARD_CLICKHOUSE_PASSWORD" $v.dashboard.clickhouse.password.value
    "LLMSIGHT_KAFKA_SASL_PASSWORD" $v.kafka.sasl.password.value
    "LLMSIGHT_DASHBOARD_PASSWORD" $v.dashboard.password.value
    "LLMSIGHT_SLACK_WEBHOOK_URL" $v.alerts.slackWebhookUrl.value
    "LLMSIGHT_WEBHOOK_URL" $v.alerts.webhookUrl.value
    "LLMSIGHT_WEBHOOK_TOKEN" $v.alerts.webhookToken.value
    "LLMSIGHT_SMTP_PASSWORD" (ternary $v.alerts.smtp.password.value "" (and $v.analyzers.enabled (not (empty $v.alerts.smtp.host))))
    "LLMSIGHT_OTLP_TOKEN" (ternary $v.otlp.token.value "" (eq $v.otlp.enabled true))
    "LLMSIGHT_JUDGE_API_KEY" (ternary $v.analyzers.judgeApiKey.value "" (eq $v.analyzers.enabled true)) -}}
{{- range $key, $value := $all }}
{{- if $value }}
{{ $key }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Notes the chart Secret's name on every secret value, for templates that render "llmsight.secretEnv"
without the root context (the analyzers Deployment). Every component's env starts with
"llmsight.clickhouseEnv", which calls this, so the note is there before those calls.
*/}}
{{- define "llmsight.stampSecrets" -}}
{{- $name := include "llmsight.secretName" . -}}
{{- range $secret := list .Values.clickhouse.password .Values.kafka.sasl.password .Values.dashboard.password
    .Values.dashboard.clickhouse.password .Values.alerts.slackWebhookUrl .Values.alerts.webhookUrl .Values.alerts.webhookToken
    .Values.otlp.token .Values.analyzers.judgeApiKey -}}
{{- $_ := set $secret "chartSecret" $name -}}
{{- end -}}
{{- end }}

{{/*
The collector's source and the SDKs' sink: kafka://host:9092[,host2:9092]/topic.
*/}}
{{- define "llmsight.kafkaURL" -}}
{{- printf "kafka://%s/%s" (.Values.kafka.bootstrapServers | nospace) .Values.kafka.topic }}
{{- end }}

{{- define "llmsight.kafkaUsesSASL" -}}
{{- if hasPrefix "SASL_" (.Values.kafka.securityProtocol | upper) }}true{{ end }}
{{- end }}

{{- define "llmsight.kafkaUsesTLS" -}}
{{- if hasSuffix "SSL" (.Values.kafka.securityProtocol | upper) }}true{{ end }}
{{- end }}

{{- define "llmsight.kafkaCAPath" -}}
/etc/llmsight/kafka-ca/{{ .Values.kafka.tls.caSecret.key }}
{{- end }}

{{/*
The brokers' CA bundle (kafka.tls.caSecret), mounted where LLMSIGHT_KAFKA_SSL_CAFILE (in the settings ConfigMap
of every pod) points, in every pod that gets that ConfigMap: the collector, the OTLP receiver and the analyzers
(whose replicas share work through Kafka) read it; the dashboard gets it so that no pod names a missing file.
*/}}
{{- define "llmsight.kafkaCAVolumeMount" -}}
{{- if and (include "llmsight.kafkaUsesTLS" .) .Values.kafka.tls.caSecret.name }}
- name: kafka-ca
  mountPath: {{ include "llmsight.kafkaCAPath" . | dir }}
  readOnly: true
{{- end }}
{{- end }}

{{- define "llmsight.kafkaCAVolume" -}}
{{- if and (include "llmsight.kafkaUsesTLS" .) .Values.kafka.tls.caSecret.name }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.tls.caSecret.name | quote }}
    items:
      - key: {{ .Values.kafka.tls.caSecret.key | quote }}
        path: {{ .Values.kafka.tls.caSecret.key | quote }}
{{- end }}
{{- end }}

{{- define "llmsight.exportsPath" -}}
/var/lib/llmsight/exports
{{- end }}

{{- define "llmsight.rulesPath" -}}
/etc/llmsight/rules/rules.yaml
{{- end }}

{{/*
The alert rules from alerts.rules, for the analyzers (which evaluate them) and the dashboard
(which shows them): LLMSIGHT_RULES, the mount and the volume. Nothing when the defaults apply.
*/}}
{{- define "llmsight.rulesEnv" -}}
{{- if .Values.alerts.rules }}
- name: LLMSIGHT_RULES
  value: {{ include "llmsight.rulesPath" . | quote }}
{{- end }}
{{- end }}

{{- define "llmsight.rulesVolumeMount" -}}
{{- if .Values.alerts.rules }}
- name: rules
  mountPath: {{ include "llmsight.rulesPath" . | dir }}
  readOnly: true
{{- end }}
{{- end }}

{{- define "llmsight.rulesVolume" -}}
{{- if .Values.alerts.rules }}
- name: rules
  configMap:
    name: {{ include "llmsight.fullname" . }}-rules
{{- end }}
{{- end }}

{{- define "llmsight.evaluatorsPath" -}}
/etc/llmsight/evaluators/evaluators.yaml
{{- end }}

{{/*
The online evaluators from analyzers.evaluators, for the analyzers: LLMSIGHT_EVALUATORS_FILE, the mount,
the volume, and the judges' API key (analyzers.judgeApiKey: a secretKeyRef, or the plain value kept in
the chart's Secret under LLMSIGHT_JUDGE_API_KEY) in the variable analyzers.judgeApiKey.env.
Nothing when no evaluator is given (the shipped file, every evaluator off, applies).
*/}}
{{- define "llmsight.evaluatorsEnv" -}}
{{- if .Values.analyzers.evaluators }}
- name: LLMSIGHT_EVALUATORS_FILE
  value: {{ include "llmsight.evaluatorsPath" . | quote }}
{{- end }}
{{- $key := .Values.analyzers.judgeApiKey }}
{{- include "llmsight.secretEnv" (dict "name" $key.env "key" "analyzers.judgeApiKey" "value" $key
    "secret" (include "llmsight.secretName" .) "secretKey" "LLMSIGHT_JUDGE_API_KEY") }}
{{- end }}

{{/*
The ports of the judges' endpoints (analyzers.evaluators[].judge.base_url; 443 for https, 80 for http
without one), as a JSON array: the analyzers' NetworkPolicy lets them out to these.
*/}}
{{- define "llmsight.judgePorts" -}}
{{- $ports := list -}}
{{- if .Values.analyzers.evaluators -}}
{{- range $evaluator := .Values.analyzers.evaluators.evaluators | default list -}}
{{- with ($evaluator.judge | default dict).base_url -}}
{{- $url := urlParse . -}}
{{- $port := regexFind ":[0-9]+$" $url.host | trimPrefix ":" -}}
{{- $ports = append $ports (int ($port | default (ternary "443" "80" (eq $url.scheme "https")))) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $ports | uniq | toJson -}}
{{- end }}

{{- define "llmsight.evaluatorsVolumeMount" -}}
{{- if .Values.analyzers.evaluators }}
- name: evaluators
  mountPath: {{ include "llmsight.evaluatorsPath" . | dir }}
  readOnly: true
{{- end }}
{{- end }}

{{- define "llmsight.evaluatorsVolume" -}}
{{- if .Values.analyzers.evaluators }}
- name: evaluators
  configMap:
    name: {{ include "llmsight.fullname" . }}-evaluators
{{- end }}
{{- end }}

{{/*
The ClickHouse password (when there is one), then the store URL built from the url, user and
database values. Kubernetes expands $(CLICKHOUSE_PASSWORD) from the variable defined just before,
so the password stays in its Secret and never appears in the manifest.
"llmsight.clickhouseEnv" (root context): the release's user, its password from the chart Secret.
"llmsight.clickhouseEnvFor" (dict "root" $ "user" u "password" .Values...password "secret" name "secretKey" k):
another user (the dashboard's) or another Secret (the migrations hook's).
*/}}
{{- define "llmsight.clickhouseEnv" -}}
{{- include "llmsight.stampSecrets" . -}}
{{- include "llmsight.clickhouseEnvFor" (dict "root" . "user" .Values.clickhouse.user "password" .Values.clickhouse.password
    "secret" (include "llmsight.secretName" .) "secretKey" "CLICKHOUSE_PASSWORD") }}
{{- end }}

{{- define "llmsight.clickhouseEnvFor" -}}
{{- $root := .root -}}
{{- $pw := include "llmsight.secretEnv" (dict "name" "CLICKHOUSE_PASSWORD" "key" "clickhouse.password" "value" .password "secret" .secret "secretKey" .secretKey) -}}
{{- $url := urlParse $root.Values.clickhouse.url -}}
{{- $auth := .user -}}
{{- if $pw }}
{{- $pw }}
{{- $auth = printf "%s:$(CLICKHOUSE_PASSWORD)" .user -}}
{{- end }}
- name: LLMSIGHT_CLICKHOUSE_URL
  value: {{ printf "%s://%s%s/%s" $url.scheme (ternary (printf "%s@" $auth) "" (ne $auth "")) $url.host $root.Values.clickhouse.database | quote }}
{{- end }}

{{/*
The ClickHouse port (from clickhouse.url, else 8123 for http and 8443 for https) and the Kafka ports
(from kafka.bootstrapServers, else 9092), for the NetworkPolicies.
*/}}
{{- define "llmsight.clickhousePort" -}}
{{- $url := urlParse .Values.clickhouse.url -}}
{{- $parts := splitList ":" $url.host -}}
{{- if gt (len $parts) 1 }}{{ last $parts }}{{ else }}{{ ternary "8443" "8123" (eq $url.scheme "https") }}{{ end }}
{{- end }}

{{- define "llmsight.kafkaPorts" -}}
{{- $ports := list -}}
{{- range splitList "," (.Values.kafka.bootstrapServers | nospace) -}}
{{- $parts := splitList ":" . -}}
{{- $ports = append $ports (ternary (last $parts) "9092" (gt (len $parts) 1)) -}}
{{- end -}}
{{- $ports | uniq | toJson }}
{{- end }}

{{/*
The settings every component shares, as NAME: value; the settings ConfigMap holds them and the
migrations Job (a pre-install hook, which runs before the ConfigMap exists) gets them inline.
*/}}
{{- define "llmsight.settings" -}}
HOME: /tmp
HF_HUB_OFFLINE: "1"
TRANSFORMERS_OFFLINE: "1"
LLMSIGHT_SINK: {{ include "llmsight.kafkaURL" . | quote }}
LLMSIGHT_KAFKA_SECURITY_PROTOCOL: {{ .Values.kafka.securityProtocol | upper | quote }}
{{- if include "llmsight.kafkaUsesSASL" . }}
LLMSIGHT_KAFKA_SASL_MECHANISM: {{ .Values.kafka.sasl.mechanism | upper | quote }}
LLMSIGHT_KAFKA_SASL_USERNAME: {{ .Values.kafka.sasl.username | quote }}
{{- end }}
{{- if and (include "llmsight.kafkaUsesTLS" .) .Values.kafka.tls.caSecret.name }}
LLMSIGHT_KAFKA_SSL_CAFILE: {{ include "llmsight.kafkaCAPath" . | quote }}
{{- end }}
{{- if .Values.clickhouse.cluster }}
LLMSIGHT_CLICKHOUSE_CLUSTER: {{ .Values.clickhouse.cluster | quote }}
{{- end }}
{{- range $name, $value := .Values.settings }}
{{ $name }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/*
Settings names the chart derives from structured values; `settings` must not set them.
*/}}
{{- define "llmsight.managedSettings" -}}
{{- list "LLMSIGHT_CLICKHOUSE_URL" "LLMSIGHT_CLICKHOUSE_CLUSTER" "LLMSIGHT_SINK" "LLMSIGHT_RULES"
    "LLMSIGHT_KAFKA_SECURITY_PROTOCOL" "LLMSIGHT_KAFKA_SASL_MECHANISM" "LLMSIGHT_KAFKA_SASL_USERNAME"
    "LLMSIGHT_KAFKA_SASL_PASSWORD" "LLMSIGHT_KAFKA_SSL_CAFILE" "LLMSIGHT_DASHBOARD_PASSWORD"
    "LLMSIGHT_SLACK_WEBHOOK_URL" "LLMSIGHT_WEBHOOK_URL" "LLMSIGHT_WEBHOOK_TOKEN" "LLMSIGHT_DASHBOARD_URL"
    "LLMSIGHT_SMTP_HOST" "LLMSIGHT_SMTP_PORT" "LLMSIGHT_SMTP_TLS" "LLMSIGHT_SMTP_STARTTLS" "LLMSIGHT_SMTP_USER"
    "LLMSIGHT_SMTP_PASSWORD" "LLMSIGHT_SMTP_FROM" "LLMSIGHT_SMTP_TO" "LLMSIGHT_SMTP_RULE_TO" "LLMSIGHT_SMTP_CAFILE"
    "LLMSIGHT_COLLECTOR_HTTP_PORT" "LLMSIGHT_ANALYZERS_HTTP_PORT" "LLMSIGHT_OTLP_TOKEN" "LLMSIGHT_OTLP_ADDRESS"
    "LLMSIGHT_OTLP_HTTP_PORT" "LLMSIGHT_OTLP_GRPC_PORT" | toJson }}
{{- end }}

{{/*
The dashboard gets a generated password when none is given and OIDC is off.
*/}}
{{- define "llmsight.dashboardGeneratesPassword" -}}
{{- $pw := .Values.dashboard.password -}}
{{- if not (or $pw.value $pw.secretKeyRef.name .Values.dashboard.oidcSecret) }}true{{ end }}
{{- end }}

{{- define "llmsight.dashboardSecretName" -}}
{{- printf "%s-dashboard" (include "llmsight.fullname" .) }}
{{- end }}

{{/*
Pod-level pieces every component shares. Call with (dict "root" $ "values" .Values.collector).
With "hook" true (the migrations Job) a chart-created ServiceAccount is left out: hooks run
before it exists, and the pods need no Kubernetes API access anyway.
*/}}
{{- define "llmsight.podCommon" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if not .hook }}
serviceAccountName: {{ include "llmsight.serviceAccountName" .root }}
{{- else if not .root.Values.serviceAccount.create }}
serviceAccountName: {{ include "llmsight.serviceAccountName" .root }}
{{- end }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Pod annotations: the component's own plus a checksum of the settings and rules, so that a
changed setting rolls the pods.
*/}}
{{- define "llmsight.podAnnotations" -}}
checksum/settings: {{ include "llmsight.settings" .root | sha256sum }}
checksum/rules: {{ toYaml .root.Values.alerts.rules | sha256sum }}
{{- with .values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "llmsight.httpProbe" -}}
httpGet:
  path: {{ .path }}
  port: http
{{ toYaml .probe }}
{{- end }}

{{/*
The OTLP receiver's token: a generated one (Secret <fullname>-otlp) unless a value or secretKeyRef is given.
*/}}
{{- define "llmsight.otlpGeneratesToken" -}}
{{- $token := .Values.otlp.token -}}
{{- if not (or $token.value $token.secretKeyRef.name) }}true{{ end }}
{{- end }}

{{- define "llmsight.otlpSecretName" -}}
{{- printf "%s-otlp" (include "llmsight.fullname" .) }}
{{- end }}
