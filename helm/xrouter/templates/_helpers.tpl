{{/*
Names, labels and connection strings shared by the templates. Object names are fixed (the
kustomize base's names; README.md, "Names"), so a namespace holds one release.
*/}}

{{- define "xrouter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Metadata labels of every object. Call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "xrouter.labels" -}}
helm.sh/chart: {{ include "xrouter.chart" .ctx }}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: xrouter
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{/* What a Deployment selects its pods by. Call with (dict "ctx" $ "app" "api-gateway"). */}}
{{- define "xrouter.selectorLabels" -}}
app: {{ .app }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- end -}}

{{/*
Pod labels: `app` is the tier (NetworkPolicies, dashboards, alerts), `part-of` is what the
Prometheus job `xrouter` keeps, `name` is the kustomize base's (xrouter-gateway, ...). Call with
(dict "ctx" $ "app" "api-gateway" "name" "xrouter-gateway" "component" "gateway").
*/}}
{{- define "xrouter.podLabels" -}}
{{ include "xrouter.selectorLabels" . }}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: xrouter
{{- end -}}

{{- define "xrouter.secretName" -}}
{{- required "secrets.existingSecret names the Secret the workloads read" .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "xrouter.catalogConfigMap" -}}
{{- .Values.catalog.existingConfigMap | default "xrouter-catalog" -}}
{{- end -}}

{{- define "xrouter.gatewayImage" -}}
{{- printf "%s:%s" .Values.image.gateway.repository (.Values.image.gateway.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "xrouter.routerImage" -}}
{{- printf "%s:%s" .Values.image.router.repository (.Values.image.router.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/*
The full name a Bitnami subchart gives its objects (common.names.fullname), for the Service
names below. Call with (dict "ctx" $ "chart" "postgresql-ha").
*/}}
{{- define "xrouter.subchartFullname" -}}
{{- $values := index .ctx.Values .chart -}}
{{- if $values.fullnameOverride -}}
{{- $values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := $values.nameOverride | default .chart -}}
{{- if contains $name .ctx.Release.Name -}}
{{- .ctx.Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .ctx.Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "xrouter.bundledPostgres" -}}
{{- if (index .Values "postgresql-ha").enabled -}}true{{- end -}}
{{- end -}}

{{- define "xrouter.bundledRedis" -}}
{{- if (index .Values "redis-cluster").enabled -}}true{{- end -}}
{{- end -}}

{{/* PostgreSQL endpoint: Pgpool of the bundled postgresql-ha, or externalDatabase. */}}
{{- define "xrouter.dbHost" -}}
{{- if include "xrouter.bundledPostgres" . -}}
{{- printf "%s-pgpool" (include "xrouter.subchartFullname" (dict "ctx" . "chart" "postgresql-ha")) | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- required "externalDatabase.host is required when postgresql-ha.enabled is false" .Values.externalDatabase.host -}}
{{- end -}}
{{- end -}}

{{- define "xrouter.dbPort" -}}
{{- if include "xrouter.bundledPostgres" . -}}5432{{- else -}}{{ .Values.externalDatabase.port }}{{- end -}}
{{- end -}}

{{- define "xrouter.dbUser" -}}
{{- if include "xrouter.bundledPostgres" . -}}
{{- (index .Values "postgresql-ha").postgresql.username | default "xrouter" -}}
{{- else -}}
{{- .Values.externalDatabase.user -}}
{{- end -}}
{{- end -}}

{{- define "xrouter.dbName" -}}
{{- if include "xrouter.bundledPostgres" . -}}
{{- (index .Values "postgresql-ha").postgresql.database | default "xrouter" -}}
{{- else -}}
{{- .Values.externalDatabase.database -}}
{{- end -}}
{{- end -}}

{{/* No password in the URL: libpq reads PGPASSWORD (secret key db-password). */}}
{{- define "xrouter.databaseUrl" -}}
{{- printf "postgresql://%s@%s:%s/%s?target_session_attrs=read-write" (include "xrouter.dbUser" .) (include "xrouter.dbHost" .) (include "xrouter.dbPort" .) (include "xrouter.dbName" .) -}}
{{- end -}}

{{- define "xrouter.redisHost" -}}
{{- if include "xrouter.bundledRedis" . -}}
{{- include "xrouter.subchartFullname" (dict "ctx" . "chart" "redis-cluster") -}}
{{- else -}}
{{- required "externalRedis.host is required when redis-cluster.enabled is false" .Values.externalRedis.host -}}
{{- end -}}
{{- end -}}

{{- define "xrouter.redisPort" -}}
{{- if include "xrouter.bundledRedis" . -}}6379{{- else -}}{{ .Values.externalRedis.port }}{{- end -}}
{{- end -}}

{{/* $(REDIS_PASSWORD) is expanded by Kubernetes from the variable defined before it. */}}
{{- define "xrouter.redisUrl" -}}
{{- if .Values.tls.redis.caSecret -}}
{{- printf "rediss://:$(REDIS_PASSWORD)@%s:%s" (include "xrouter.redisHost" .) (include "xrouter.redisPort" .) -}}
{{- if not .Values.tls.redis.checkHostname }}?ssl_check_hostname=false{{ end -}}
{{- else -}}
{{- printf "redis://:$(REDIS_PASSWORD)@%s:%s" (include "xrouter.redisHost" .) (include "xrouter.redisPort" .) -}}
{{- end -}}
{{- end -}}

{{/* The gateway's client-side round robin over every ready router (headless Service). */}}
{{- define "xrouter.routerTarget" -}}
{{- printf "dns:///router-service-headless.%s.svc.%s:50051" .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{- define "xrouter.gatewayUrl" -}}
{{- printf "http://api-gateway.%s.svc.%s:%v" .Release.Namespace .Values.clusterDomain .Values.gateway.service.port -}}
{{- end -}}

{{/*
Migration hook phases. With an external database the schema is migrated before any object of
the release changes (pre-install). The bundled postgresql-ha is itself created by the install, so
on the first install the Job runs once the release's objects exist (post-install); upgrades are
pre-upgrade either way.
*/}}
{{- define "xrouter.migrationHook" -}}
{{- if include "xrouter.bundledPostgres" . -}}post-install,pre-upgrade{{- else -}}pre-install,pre-upgrade{{- end -}}
{{- end -}}

{{/* Name resolution: the cluster DNS in kube-system. */}}
{{- define "xrouter.dnsEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: kube-system
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end -}}

{{/* Pod security context. Call with the UID (10001 for XRouter, 999 for the postgres image). */}}
{{- define "xrouter.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ . }}
runAsGroup: {{ . }}
fsGroup: {{ . }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "xrouter.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Values that contradict each other stop the render with a message naming the keys. */}}
{{- define "xrouter.checks" -}}
{{- $secret := include "xrouter.secretName" . -}}
{{- $pg := index .Values "postgresql-ha" -}}
{{- if $pg.enabled -}}
{{- if ne ($pg.postgresql.existingSecret | default "") $secret -}}
{{- fail (printf "postgresql-ha.postgresql.existingSecret (%q) must equal secrets.existingSecret (%q): PostgreSQL and the routers share one password" ($pg.postgresql.existingSecret | default "") $secret) -}}
{{- end -}}
{{- if ne ($pg.pgpool.existingSecret | default "") $secret -}}
{{- fail (printf "postgresql-ha.pgpool.existingSecret (%q) must equal secrets.existingSecret (%q)" ($pg.pgpool.existingSecret | default "") $secret) -}}
{{- end -}}
{{- end -}}
{{- $redis := index .Values "redis-cluster" -}}
{{- if $redis.enabled -}}
{{- if or (ne ($redis.existingSecret | default "") $secret) (ne ($redis.existingSecretPasswordKey | default "") "redis-password") -}}
{{- fail (printf "redis-cluster.existingSecret/existingSecretPasswordKey must be %q/redis-password: Redis and the routers share one password" $secret) -}}
{{- end -}}
{{- end -}}
{{- $gw := .Values.gateway -}}
{{- if lt (int $gw.terminationGracePeriodSeconds) (add $gw.preStopSleepSeconds $gw.drainSeconds | int) -}}
{{- fail (printf "gateway.terminationGracePeriodSeconds (%v) must cover gateway.preStopSleepSeconds + gateway.drainSeconds (%v): Kubernetes would kill the gateway mid-drain" $gw.terminationGracePeriodSeconds (add $gw.preStopSleepSeconds $gw.drainSeconds)) -}}
{{- end -}}
{{- if and (not .Values.catalog.existingConfigMap) (not .Values.catalog.toml) -}}
{{- fail "catalog.toml or catalog.existingConfigMap is required" -}}
{{- end -}}
{{- end -}}

{{/* The CA files of Redis and PostgreSQL (values tls.redis, tls.database), mounted from Secrets. */}}
{{- define "xrouter.redisCaFile" -}}
{{- printf "/etc/xrouter/redis-ca/%s" .Values.tls.redis.caKey -}}
{{- end -}}

{{- define "xrouter.databaseCaFile" -}}
{{- printf "/etc/xrouter/database-ca/%s" .Values.tls.database.caKey -}}
{{- end -}}

{{/* Environment entries for the database's CA (router, migration). */}}
{{- define "xrouter.databaseTlsEnv" -}}
{{- if .Values.tls.database.caSecret }}
- name: XROUTER_DATABASE_TLS_CA
  value: {{ include "xrouter.databaseCaFile" . }}
{{- end }}
{{- end -}}

{{- define "xrouter.databaseTlsMount" -}}
{{- if .Values.tls.database.caSecret }}
- name: database-ca
  mountPath: /etc/xrouter/database-ca
  readOnly: true
{{- end }}
{{- end -}}

{{- define "xrouter.databaseTlsVolume" -}}
{{- if .Values.tls.database.caSecret }}
- name: database-ca
  secret:
    secretName: {{ .Values.tls.database.caSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.tls.database.caKey }}
        path: {{ .Values.tls.database.caKey }}
{{- end }}
{{- end -}}
