{{/* Names and labels. */}}
{{- define "armed.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "armed.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "armed.selectorLabels" -}}
app.kubernetes.io/name: {{ include "armed.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of the Ray pods (head and workers), and the selector of everything that selects them (PDBs,
     NetworkPolicy, PodMonitor, the metrics Service). They must not set app.kubernetes.io/name or
     app.kubernetes.io/created-by: KubeRay keeps a template's value for those keys on the pod (common/pod.go,
     labelPod: only ray.io/node-type, ray.io/group and ray.io/cluster cannot be overridden), but builds the
     RayService's stable head Service `<name>-head-svc` with no labels passed in (common/service.go,
     BuildHeadServiceForRayService → BuildServiceForHeadPod(ctx, cluster, nil, nil)), so its selector requires
     app.kubernetes.io/name=kuberay and app.kubernetes.io/created-by=kuberay-operator (HeadServiceLabels). A head
     labelled app.kubernetes.io/name=armed leaves that Service without endpoints (KubeRay issue #2648). */}}
{{- define "armed.podLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: armed
{{- end -}}

{{- define "armed.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "armed.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: armed
{{- end -}}

{{/* The profile document: profileValues when given, else the shipped files/profiles/<profile>.yaml. */}}
{{- define "armed.profile" -}}
{{- if .Values.profileValues -}}
{{- toYaml .Values.profileValues -}}
{{- else -}}
{{- $file := .Files.Get (printf "files/profiles/%s.yaml" .Values.profile) -}}
{{- if not $file -}}
{{- fail (printf "profile %q is not shipped with the chart (files/profiles/); render it with `armed-ops render-values --profile PATH` and pass the file with -f" .Values.profile) -}}
{{- end -}}
{{- $file -}}
{{- end -}}
{{- end -}}

{{/* The one image of every Ray container (head and all worker groups): the profile's flavour picks the tag, so a
     profile that serves with vLLM has vLLM on the head too (it builds the ray-llm apps; the judge imports
     ray.serve.llm). Flavours are the k8s/Dockerfile FLAVOR builds. */}}
{{- define "armed.image" -}}
{{- $p := include "armed.profile" . | fromYaml -}}
{{- $flavor := $p.imageFlavor | default "gpu" -}}
{{- $tag := index .Values.image.tags $flavor -}}
{{- if not $tag -}}
{{- fail (printf "image.tags.%s is empty: profile %q runs the %s image flavour (k8s/Dockerfile --build-arg FLAVOR=%s)" $flavor $p.name $flavor $flavor) -}}
{{- end -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}

{{/* The Serve Service that KubeRay manages for the RayService (utils.GenerateServeServiceName: <name>-serve-svc).
     KubeRay points its selector at the *active* cluster (ray.io/cluster=<active>, ray.io/serve=true) and moves it
     when an upgrade switches clusters, so traffic never reaches a pending cluster. */}}
{{- define "armed.serveService" -}}
{{- printf "%s-serve-svc" (include "armed.fullname" .) -}}
{{- end -}}

{{- define "armed.apiKeySecret" -}}
{{- .Values.apiKey.existingSecret | default (printf "%s-api-key" (include "armed.fullname" .)) -}}
{{- end -}}

{{/* Pod security context shared by every Ray pod. */}}
{{- define "armed.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurity.runAsUser }}
runAsGroup: {{ .Values.podSecurity.runAsGroup }}
fsGroup: {{ .Values.podSecurity.runAsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "armed.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: {{ .Values.podSecurity.readOnlyRootFilesystem }}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurity.runAsUser }}
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* Environment of every Ray container: caches under /tmp (read-only root), the API key, user extras. */}}
{{/* The judge app's input limits (the profile's `limits`, armed/serving/limits.py) as YAML, {} when the profile has no
judge: read by the Ingress (its body size) and by armed.env (the proxy's body bounds). Takes the root context. */}}
{{- define "armed.judgeLimits" -}}
{{- $p := include "armed.profile" . | fromYaml -}}
{{- $limits := dict -}}
{{- range (fromYaml $p.serveConfigV2).applications }}
{{- if and (eq .name "judge") .args.profile }}
{{- $limits = .args.profile.limits | default dict -}}
{{- end }}
{{- end }}
{{- toYaml $limits -}}
{{- end -}}

{{- define "armed.env" -}}
- name: RAY_USAGE_STATS_ENABLED
  value: "0"
- name: XDG_CACHE_HOME
  value: /home/ray/.cache
- name: HF_HOME
  value: /home/ray/.cache/huggingface
- name: VLLM_CACHE_ROOT
  value: /home/ray/.cache/vllm
- name: TRITON_CACHE_DIR
  value: /home/ray/.cache/triton
- name: ARMED_CACHE_DIR
  value: /home/ray/.cache/armed
# Serve's HTTP proxy answers a non-UTF-8 header with 400, not a 500 (armed/serving/proxy_guard.py, PROXY_ENV).
- name: RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH
  value: armed.serving.proxy_guard.proxy_middlewares
{{- /* The proxy reads each body before Serve picks a replica, bounded by the profile's limits (what `armed up` passes
     it locally: armed/serving/edge.py proxy_env); without these it would refuse bodies the judge app accepts. */}}
{{- with include "armed.judgeLimits" . | fromYaml }}
{{- if .body_bytes }}
- name: ARMED_EDGE_BODY_BYTES
  value: {{ .body_bytes | int64 | quote }}
- name: ARMED_EDGE_BODY_TIMEOUT_S
  value: {{ .body_timeout_s | toString | quote }}
{{- end }}
{{- end }}
{{- include "armed.shippedEnv" . }}
{{- if .Values.apiKey.enabled }}
- name: ARMED_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "armed.apiKeySecret" . }}
      key: {{ .Values.apiKey.secretKey }}
{{- end }}
{{- with .Values.env }}
{{- range . }}
{{- if and $.Values.gcsFaultTolerance.enabled (has .name (list "RAY_REDIS_ADDRESS" "REDIS_PASSWORD" "REDIS_USERNAME")) }}
{{- fail (printf "env %s: with gcsFaultTolerance.enabled KubeRay rejects it in the head (utils/validation.go, ValidateRayClusterSpec); set gcsFaultTolerance.redisAddress / redisPasswordSecret instead" .name) }}
{{- end }}
{{- end }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Writable emptyDirs (the root file system is read-only). */}}
{{- define "armed.baseVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.podSecurity.tmpSizeLimit }}
- name: cache
  emptyDir: {}
- name: shm
  emptyDir:
    medium: Memory
    {{- with .Values.podSecurity.shmSizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
{{- end -}}

{{- define "armed.baseVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: cache
  mountPath: /home/ray/.cache
- name: shm
  mountPath: /dev/shm
{{- end -}}

{{/* "role=/route,..." of every Serve application (the judge is `/`). */}}
{{- define "armed.routes" -}}
{{- $p := include "armed.profile" . | fromYaml -}}
{{- $r := list "judge=/" -}}
{{- range $m := $p.models }}{{ $r = append $r (printf "%s=%s" $m.role $m.routePrefix) }}{{ end -}}
{{- join "," $r -}}
{{- end -}}

{{/* Model weights (values `modelWeights`). The profile is the one source of truth for which checkpoint folders a
pool needs: profileValues.pools[].modelPaths (ops/profile_values.py, pool_model_paths). A path under
modelWeights.mountPath is the chart's to provide; its first component below mountPath is the folder synced.
`armed.poolModelFolders` takes (dict "ctx" $ "pool" $pool) and returns a JSON list of those folders. */}}
{{- define "armed.poolModelFolders" -}}
{{- $prefix := printf "%s/" (trimSuffix "/" .ctx.Values.modelWeights.mountPath) -}}
{{- $folders := list -}}
{{- range .pool.modelPaths | default list -}}
{{- if hasPrefix $prefix . -}}
{{- $folders = append $folders (trimPrefix $prefix . | splitList "/" | first) -}}
{{- end -}}
{{- end -}}
{{- toJson (uniq $folders) -}}
{{- end -}}

{{/* Fails the render when the profile loads weights the chart was given no way to provide: source none with a
GPU profile's /models paths, or hub without a repo for one of the folders. Takes the root context. */}}
{{- define "armed.modelWeights.check" -}}
{{- $p := include "armed.profile" . | fromYaml -}}
{{- $mw := .Values.modelWeights -}}
{{- $needs := list -}}
{{- range $pool := $p.pools -}}
{{- range include "armed.poolModelFolders" (dict "ctx" $ "pool" $pool) | fromJsonArray -}}
{{- $needs = append $needs (printf "%s (pool %s)" . $pool.name) -}}
{{- if and (eq $mw.source "hub") (not (hasKey $mw.hub.repos .)) -}}
{{- fail (printf "modelWeights.source is hub but modelWeights.hub.repos has no Hugging Face repo for %s/%s, which profile %q loads on pool %s: add `modelWeights.hub.repos.%s: <org>/<repo>` (the armed-trained classifiers are not on the Hub: upload yours first), or use modelWeights.source pvc or objectStore" $mw.mountPath . $p.name $pool.name .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and $needs (eq $mw.source "none") -}}
{{- fail (printf "profile %q loads model weights from %s that nothing provides: %s. Set modelWeights.source to hub (download from the Hugging Face Hub: modelWeights.hub.repos maps each folder to a repo, modelWeights.hub.tokenSecret.name a Secret with a token), pvc (modelWeights.pvc.claimName: a ReadOnlyMany claim holding those folders) or objectStore (modelWeights.objectStore.uri and existingSecret)" $p.name $mw.mountPath (join ", " $needs)) -}}
{{- end -}}
{{- end -}}

{{/* The judge's knowledge base (values `knowledge`), for the pool that runs the judge: ARMED_KNOWLEDGE__ARTEFACT is
     armed.settings.KnowledgeSettings.artefact ("none": rebuild from the seed; a path: a built artefact). */}}
{{- define "armed.knowledgeEnv" -}}
{{- $k := .Values.knowledge -}}
- name: ARMED_KNOWLEDGE__ARTEFACT
{{- if has $k.source (list "pvc" "objectStore") }}
  value: {{ $k.mountPath | quote }}
{{- else if eq $k.source "image" }}
{{- if not $k.imagePath }}
{{- fail "knowledge.source=image needs knowledge.imagePath: where `armed kb build` put the artefact in your image" }}
{{- end }}
  value: {{ $k.imagePath | quote }}
{{- else }}
  value: "none"
{{- end }}
{{- end -}}

{{/* Value combinations KubeRay v1.7.0 rejects (the operator marks the RayService invalid and creates no pod), failed
at render time with the value to change. JSON Schema (draft-07, what helm checks values.schema.json with) cannot
compare two values, so these live here; ops/kuberay_rules.py checks the same on any rendered manifest (rules
worker-replicas, worker-idle-timeout, incremental-upgrade-options). Takes the root context. */}}
{{- define "armed.kuberay.check" -}}
{{- $p := include "armed.profile" . | fromYaml -}}
{{- $wg := .Values.workerGroups -}}
{{- range $pool := $p.pools -}}
{{- $ov := index $wg.overrides $pool.name | default dict -}}
{{- /* validation.go ValidateRayClusterSpec ~133-137: "worker group %s has minReplicas %d greater than maxReplicas %d" */ -}}
{{- $min := int (ternary $ov.minReplicas $pool.minNodes (hasKey $ov "minReplicas")) -}}
{{- $max := int (ternary $ov.maxReplicas $pool.maxNodes (hasKey $ov "maxReplicas")) -}}
{{- if gt $min $max -}}
{{- $minFrom := ternary (printf "workerGroups.overrides.%s.minReplicas" $pool.name) (printf "profile %q pool %s minNodes" $p.name $pool.name) (hasKey $ov "minReplicas") -}}
{{- $maxFrom := ternary (printf "workerGroups.overrides.%s.maxReplicas" $pool.name) (printf "profile %q pool %s maxNodes" $p.name $pool.name) (hasKey $ov "maxReplicas") -}}
{{- fail (printf "worker group %s: minReplicas %d (%s) is greater than maxReplicas %d (%s); KubeRay rejects the RayService (validation.go ValidateRayClusterSpec). Set workerGroups.overrides.%s.minReplicas <= maxReplicas" $pool.name $min $minFrom $max $maxFrom $pool.name) -}}
{{- end -}}
{{- /* validation.go validateWorkerGroupIdleTimeout ~1006-1027: a group's own idleTimeoutSeconds needs autoscaler v2 */ -}}
{{- if and (hasKey $ov "idleTimeoutSeconds") (ne $.Values.autoscaler.version "v2") -}}
{{- fail (printf "workerGroups.overrides.%s.idleTimeoutSeconds is set but autoscaler.version is %s: KubeRay accepts a worker group's own idleTimeoutSeconds only with autoscaler v2 and rejects the RayService (validation.go validateWorkerGroupIdleTimeout). Set autoscaler.version v2, or drop it and use autoscaler.idleTimeoutSeconds (every group)" $pool.name $.Values.autoscaler.version) -}}
{{- end -}}
{{- end -}}
{{- /* validation.go ValidateClusterUpgradeOptions ~736-738: stepSizePercent <= maxSurgePercent (CRD default 100) */ -}}
{{- $us := .Values.upgradeStrategy -}}
{{- if eq $us.type "NewClusterWithIncrementalUpgrade" -}}
{{- $o := $us.clusterUpgradeOptions | default dict -}}
{{- $surge := int (ternary $o.maxSurgePercent 100 (hasKey $o "maxSurgePercent")) -}}
{{- if and (hasKey $o "stepSizePercent") (gt (int $o.stepSizePercent) $surge) -}}
{{- fail (printf "upgradeStrategy.clusterUpgradeOptions.stepSizePercent (%d) is greater than upgradeStrategy.clusterUpgradeOptions.maxSurgePercent (%d): KubeRay rejects the RayService (validation.go ValidateClusterUpgradeOptions: stepSizePercent must be less than or equal to maxSurgePercent). Lower stepSizePercent or raise maxSurgePercent" (int $o.stepSizePercent) $surge) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Upgrade strategy checks (values `upgradeStrategy`). With NewClusterWithIncrementalUpgrade KubeRay serves through
the Gateway it creates, `<fullname>-gateway` (HTTP listener, port 80), whose HTTPRoute `<fullname>-httproute` splits
traffic between per-cluster Services `<raycluster>-serve-svc` (rayservice_controller.go createGateway /
createHTTPRoute; common/service.go BuildServeService). `<fullname>-serve-svc`, the only Service an Ingress could
name, is not maintained in that mode, and the per-cluster names change on every upgrade: an Ingress has no stable
backend, so the chart refuses it. Takes the root context. */}}
{{- define "armed.upgrade.check" -}}
{{- if and (eq .Values.upgradeStrategy.type "NewClusterWithIncrementalUpgrade") .Values.ingress.enabled -}}
{{- fail (printf "ingress.enabled with upgradeStrategy.type NewClusterWithIncrementalUpgrade: KubeRay then routes through its own Gateway %s-gateway (gatewayClassName %q, port 80) to per-cluster Services named after each RayCluster, and does not maintain %s, so the Ingress would point at nothing. Set ingress.enabled=false and send clients to the Gateway, or use upgradeStrategy.type NewCluster" (include "armed.fullname" .) (.Values.upgradeStrategy.clusterUpgradeOptions.gatewayClassName | default "") (include "armed.serveService" .)) -}}
{{- end -}}
{{- end -}}

{{/* The workers' preStop (ops/prestop.py) drains for up to drain.deadlineSeconds, then runs `ray stop` for
drain.stopGraceSeconds, plus 30 s of its own (ops/prestop.py SETUP_S 20 to connect to Ray and send the drain,
STOP_MARGIN_S 10 for `ray stop` to exit after its grace; the hook cuts every step at its share): the pod's grace period must cover all
three, or the kubelet kills Ray mid-drain. Takes the root context. */}}
{{- define "armed.drain.check" -}}
{{- $wg := .Values.workerGroups -}}
{{- $need := add $wg.drain.deadlineSeconds $wg.drain.stopGraceSeconds 30 -}}
{{- if lt (int $wg.terminationGracePeriodSeconds) (int $need) -}}
{{- fail (printf "workerGroups.terminationGracePeriodSeconds (%d) is shorter than the worker preStop needs: workerGroups.drain.deadlineSeconds (%d) + workerGroups.drain.stopGraceSeconds (%d) + 30 s of the hook's own (connect, send the drain, ray stop's exit) = %d" (int $wg.terminationGracePeriodSeconds) (int $wg.drain.deadlineSeconds) (int $wg.drain.stopGraceSeconds) (int $need)) -}}
{{- end -}}
{{- end -}}

{{/* The weight cache (values modelWeights.cache). `armed.poolCacheSizes` takes (dict "ctx" $ "pool" $pool) and
returns a JSON map of what the cache holds for that pool, checkpoint -> GiB on disk: the pool's /models folders when
the chart fetches them (source hub or objectStore) and its `shipped:` checkpoints (built there). Sizes come from the
profile only (roles' weights_gib -> profileValues.pools[].weightsGiB, ops/profile_values.py); a checkpoint the
profile gives no size for fails the render, since the cache, the claim and ephemeral-storage are sized from it. */}}
{{- define "armed.poolCacheSizes" -}}
{{- $mw := .ctx.Values.modelWeights -}}
{{- $p := include "armed.profile" .ctx | fromYaml -}}
{{- $known := .pool.weightsGiB | default dict -}}
{{- $refs := list -}}
{{- if has $mw.source (list "hub" "objectStore") -}}
{{- $prefix := printf "%s/" (trimSuffix "/" $mw.mountPath) -}}
{{- range .pool.modelPaths | default list -}}
{{- if hasPrefix $prefix . }}{{ $refs = append $refs . }}{{ end -}}
{{- end -}}
{{- end -}}
{{- $refs = concat $refs (.pool.shippedModels | default list) -}}
{{- $out := dict -}}
{{- range $refs -}}
{{- if not (hasKey $known .) -}}
{{- fail (printf "profile %q gives no size for %s (pool %s): set weights_gib (GiB on disk) on the role that loads it in its profile file and re-render the chart profiles (`armed-ops render-values --write-chart`, or `armed-ops render-values --profile PATH` for a custom one); modelWeights.cache is sized from it" $p.name . $.pool.name) -}}
{{- end -}}
{{- $_ := set $out . (index $known .) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* Sum of a JSON map of GiB, times modelWeights.cache.headroom, rounded up to whole GiB: (dict "ctx" $ "sizes" M). */}}
{{- define "armed.cacheGiB" -}}
{{- $sum := 0.0 -}}
{{- range $_, $gib := .sizes }}{{ $sum = addf $sum $gib }}{{ end -}}
{{- int (ceil (mulf $sum .ctx.Values.modelWeights.cache.headroom)) -}}
{{- end -}}

{{/* Every checkpoint the cache holds, over all pools (each once: a shared claim holds it once). */}}
{{- define "armed.allCacheSizes" -}}
{{- $p := include "armed.profile" . | fromYaml -}}
{{- $all := dict -}}
{{- range $pool := $p.pools -}}
{{- $all = merge $all (include "armed.poolCacheSizes" (dict "ctx" $ "pool" $pool) | fromJson) -}}
{{- end -}}
{{- toJson $all -}}
{{- end -}}

{{- define "armed.cacheClaim" -}}
{{- .Values.modelWeights.cache.pvc.claimName | default (printf "%s-model-cache" (include "armed.fullname" .)) -}}
{{- end -}}

{{/* The models volume of a pool whose weights live in the cache (the caller names it `models`). */}}
{{- define "armed.cacheVolume" -}}
{{- $c := .ctx.Values.modelWeights.cache -}}
{{- if eq $c.type "pvc" -}}
persistentVolumeClaim:
  claimName: {{ include "armed.cacheClaim" .ctx }}
{{- else if eq $c.type "hostPath" -}}
hostPath:
  path: {{ $c.hostPath.path }}
  type: DirectoryOrCreate
{{- else if eq $c.type "emptyDir" -}}
emptyDir:
  sizeLimit: {{ printf "%sGi" (include "armed.cacheGiB" (dict "ctx" .ctx "sizes" .sizes)) }}
{{- else -}}
{{- fail (printf "modelWeights.cache.type %q: one of pvc, hostPath, emptyDir" $c.type) -}}
{{- end -}}
{{- end -}}

{{/* Where `shipped:` checkpoints are built and looked for (armed/engines/shipped.py SHIPPED_DIR_ENV): inside the
weight cache. Set on every Ray container of a profile that has one, the head included: the Serve build task that
names the folder may run on any node. */}}
{{- define "armed.shippedEnv" -}}
{{- $p := include "armed.profile" . | fromYaml -}}
{{- $any := false -}}
{{- range $p.pools }}{{ if .shippedModels }}{{ $any = true }}{{ end }}{{ end -}}
{{- if $any }}
- name: ARMED_SHIPPED_DIR
  value: {{ include "armed.shippedDir" . | quote }}
{{- end -}}
{{- end -}}

{{- define "armed.shippedDir" -}}
{{- printf "%s/.shipped" (trimSuffix "/" .Values.modelWeights.mountPath) -}}
{{- end -}}
