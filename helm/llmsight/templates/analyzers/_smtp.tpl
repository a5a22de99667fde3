{{/*
Alert e-mail (alerts.smtp) and the dashboard link (alerts.dashboardUrl) for the analyzers, where the alert
engine runs: the LLMSIGHT_SMTP_* variables, the password from the chart's Secret or a secretKeyRef.
validations.yaml refuses what cannot work (no sender, no recipient, a login without TLS...).
*/}}
{{- define "llmsight.smtpEnv" -}}
{{- $smtp := .Values.alerts.smtp -}}
{{- with .Values.alerts.dashboardUrl }}
- name: LLMSIGHT_DASHBOARD_URL
  value: {{ . | quote }}
{{- end }}
{{- if $smtp.host }}
- name: LLMSIGHT_SMTP_HOST
  value: {{ $smtp.host | quote }}
- name: LLMSIGHT_SMTP_PORT
  value: {{ include "llmsight.smtpPort" . | quote }}
- name: LLMSIGHT_SMTP_TLS
  value: {{ eq $smtp.security "tls" | toString | quote }}
- name: LLMSIGHT_SMTP_STARTTLS
  value: {{ eq $smtp.security "starttls" | toString | quote }}
- name: LLMSIGHT_SMTP_FROM
  value: {{ $smtp.from | quote }}
{{- with $smtp.to }}
- name: LLMSIGHT_SMTP_TO
  value: {{ join "," . | quote }}
{{- end }}
{{- with $smtp.ruleTo }}
{{- $routes := list -}}
{{- range . }}
{{- $routes = append $routes (printf "%s=%s" .rule (join "," .to)) -}}
{{- end }}
- name: LLMSIGHT_SMTP_RULE_TO
  value: {{ join ";" $routes | quote }}
{{- end }}
{{- if $smtp.caSecret.name }}
- name: LLMSIGHT_SMTP_CAFILE
  value: {{ include "llmsight.smtpCAPath" . | quote }}
{{- end }}
{{- with $smtp.user }}
- name: LLMSIGHT_SMTP_USER
  value: {{ . | quote }}
{{- end }}
{{- include "llmsight.secretEnv" (dict "name" "LLMSIGHT_SMTP_PASSWORD" "key" "alerts.smtp.password" "value" $smtp.password
    "secret" (include "llmsight.secretName" .)) }}
{{- end }}
{{- end }}

{{/*
The SMTP port the analyzers connect to: alerts.smtp.port, or the usual one for its security.
*/}}
{{- define "llmsight.smtpPort" -}}
{{- $smtp := .Values.alerts.smtp -}}
{{- if $smtp.port }}{{ $smtp.port | int }}{{ else }}{{ get (dict "tls" 465 "starttls" 587 "none" 25) $smtp.security | default 587 }}{{ end -}}
{{- end }}

{{/*
The CA bundle that signed the SMTP server's certificate (alerts.smtp.caSecret), for a server whose certificate
a private CA signed: mounted read-only, LLMSIGHT_SMTP_CAFILE points at it.
*/}}
{{- define "llmsight.smtpCAPath" -}}
/etc/llmsight/smtp-ca/{{ .Values.alerts.smtp.caSecret.key }}
{{- end }}

{{- define "llmsight.smtpCAVolumeMount" -}}
{{- if and .Values.alerts.smtp.host .Values.alerts.smtp.caSecret.name }}
- name: smtp-ca
  mountPath: {{ include "llmsight.smtpCAPath" . | dir }}
  readOnly: true
{{- end }}
{{- end }}

{{- define "llmsight.smtpCAVolume" -}}
{{- if and .Values.alerts.smtp.host .Values.alerts.smtp.caSecret.name }}
- name: smtp-ca
  secret:
    secretName: {{ .Values.alerts.smtp.caSecret.name | quote }}
    items:
      - key: {{ .Values.alerts.smtp.caSecret.key | quote }}
        path: {{ .Values.alerts.smtp.caSecret.key | quote }}
{{- end }}
{{- end }}
