{{/*
Labels every object of the chart carries, split in two: the ones `kubectl apply -k deploy/`
installs too (deploy/ is rendered from these templates), and the ones that only make sense
under Helm (release, chart version), which tests/chart.rs strips when it renders deploy/.
*/}}
{{- define "crate-operator.labels" -}}
app.kubernetes.io/name: crate-operator
app.kubernetes.io/part-of: crate-operator
{{ include "crate-operator.helmLabels" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "crate-operator.helmLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/*
The manager Pods' selector. Without the release name, as deploy/ has it: selectors cannot
change on upgrade, and the operator is one per cluster anyway (its CRDs and ClusterRole are
cluster-wide).
*/}}
{{- define "crate-operator.selector" -}}
app.kubernetes.io/name: crate-operator
app.kubernetes.io/component: manager
{{- end }}

{{- define "crate-operator.image" -}}
{{ .repository }}:{{ .tag | default .appVersion }}
{{- end }}

{{- define "crate-operator.managerImage" -}}
{{ include "crate-operator.image" (merge (dict "appVersion" .Chart.AppVersion) .Values.image) }}
{{- end }}

{{- define "crate-operator.loaderImage" -}}
{{ include "crate-operator.image" (merge (dict "appVersion" .Chart.AppVersion) .Values.loader.image) }}
{{- end }}
